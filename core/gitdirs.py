"""Where a checkout's git metadata lives, read from the files git writes (no git process)."""

from __future__ import annotations

from pathlib import Path


def git_dirs(worktree: Path) -> tuple[Path, Path] | None:
    """(gitdir, common dir) of the repository checked out at `worktree`, or None if it has none.

    A linked worktree's `.git` is a file `gitdir: <main>/.git/worktrees/<name>`, whose
    `commondir` file names the main `.git`. A plain clone's `.git` is a folder (both the same).
    """
    dotgit = worktree / ".git"
    if dotgit.is_dir():
        return dotgit.resolve(), dotgit.resolve()
    if not dotgit.is_file():
        return None
    text = dotgit.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text[len("gitdir:"):].strip())
    gitdir = (gitdir if gitdir.is_absolute() else worktree / gitdir).resolve()
    common = gitdir
    commondir_file = gitdir / "commondir"
    if commondir_file.is_file():
        rel = Path(commondir_file.read_text(errors="replace").strip())
        common = (rel if rel.is_absolute() else gitdir / rel).resolve()
    if not gitdir.is_dir() or not common.is_dir():
        return None
    return gitdir, common

