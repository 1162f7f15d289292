"""Where agent commands run: bubblewrap isolation, timeouts, output caps, and the file-tool path guard."""

from learnagent.sandbox.paths import PathOutsideWorktree, resolve_in_worktree
from learnagent.sandbox.runner import CommandResult, Sandbox, SandboxUnavailable, bwrap_available

__all__ = ["CommandResult", "PathOutsideWorktree", "Sandbox", "SandboxUnavailable", "bwrap_available",
           "resolve_in_worktree"]
