"""learnagent: a terminal coding agent that learns the codebase it works in."""

__version__ = "0.1.0"
