"""The path guard for the agent's file tools (read, write, edit, list).

File tools run in the agent's own process, outside bubblewrap, so this check is their only
boundary: every path the model names goes through `resolve_in_worktree` before any I/O.
The rule: resolve the path (following symlinks and `..`) and require the result to lie inside
the worktree's real path, and outside any `.git` entry (git metadata is changed through git
commands in the sandbox, never by direct writes: a written `.git/config` or hook would run on
the user's machine later).

Known limit: a check-then-open race (a symlink swapped in between) needs a concurrently
running process; the sandbox kills every process a command started when the command ends,
and the agent loop is sequential, so nothing can swap the path between check and use.
"""

from __future__ import annotations

import os.path
from pathlib import Path

from learnagent.core.errors import LearnagentError


class PathOutsideWorktree(LearnagentError):
    """A file-tool path the agent may not touch; the message is written for the model to read."""


def _is_git_metadata(rel: Path) -> bool:
    # Any `.git` component: the worktree's `.git` file, a nested repository's or submodule's.
    # Compared case-insensitively because macOS and Windows file systems fold case.
    return any(part.lower() == ".git" for part in rel.parts)


def resolve_in_worktree(root: Path, path: str) -> Path:
    """The real path of `path` (relative to `root`, or absolute) if it is inside the worktree.

    Raises PathOutsideWorktree for paths that leave the worktree lexically (`..`, absolute
    paths elsewhere), through a symlink, or that name git metadata.
    """
    if not isinstance(path, (str, Path)) or str(path).strip() == "":
        raise PathOutsideWorktree("empty path; give a file path relative to the repository root")
    text = str(path)
    if "\x00" in text:
        raise PathOutsideWorktree(f"path {text!r} contains a NUL byte")
    root_real = Path(root).resolve()
    candidate = Path(text) if Path(text).is_absolute() else root_real / text
    lexical = Path(os.path.normpath(candidate))  # `..` folded without following symlinks
    try:
        resolved = candidate.resolve(strict=False)  # follows every symlink that exists, folds `..`
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
        raise PathOutsideWorktree(f"path '{text}' cannot be resolved ({exc})") from None

    if not _inside(resolved, root_real):
        # Say *why* so the model can correct itself: a symlink is a different mistake from `..`.
        if _inside(lexical, root_real):
            raise PathOutsideWorktree(
                f"path '{text}' goes through a symlink to {resolved}, which is outside the worktree; "
                f"only files inside the repository ({root_real}) can be used")
        raise PathOutsideWorktree(
            f"path '{text}' is outside the worktree; use a path inside the repository ({root_real})")

    # Both spellings are checked: `.git` named directly, or reached through a symlink.
    names_git = _is_git_metadata(resolved.relative_to(root_real)) or (
        _inside(lexical, root_real) and _is_git_metadata(lexical.relative_to(root_real)))
    if names_git:
        raise PathOutsideWorktree(
            f"path '{text}' is git metadata (.git); use git commands in the shell instead")
    return resolved


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
