"""Errors that end a command with a one-line message and a non-zero exit.

Control flow by exceptions that carry their message (as in mini-swe-agent): code deep in
the stack raises, the CLI prints `error: <message>` and exits with `exit_code`.
"""


class LearnagentError(Exception):
    """A user-facing failure. `str(err)` is the one-line message."""

    exit_code = 1


class UsageError(LearnagentError):
    exit_code = 2


class NotAGitRepo(LearnagentError):
    pass


class ModelNotFound(LearnagentError):
    pass


class StoreError(LearnagentError):
    pass
