"""Errors that end a command with a one-line message and a non-zero exit.

Control flow by exceptions that carry their message (as in mini-swe-agent): code deep in
the stack raises, the CLI prints `error: <message>` and exits with `exit_code`.
"""


class LearnagentError(Exception):
    """A user-facing failure. `str(err)` is the one-line message."""

    exit_code = 1


class UsageError(LearnagentError):
    """Bad input: what the user asked for, or where, cannot work as given (exit 2, see README)."""

    exit_code = 2


class NotAGitRepo(UsageError):
    pass


class RepoNotReady(UsageError):
    """A repository learnagent cannot work on as it is: no commits yet, or a detached HEAD."""


class ModelNotFound(UsageError):
    """An unknown model spec, a missing scripted-model file or model folder, a model not installed."""


class StoreError(LearnagentError):
    pass


class UnknownEpisode(UsageError):
    """An episode id (or prefix) that names no episode, or more than one: bad input, exit 2."""
