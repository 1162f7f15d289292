"""Where learnagent keeps its files.

- data home (`LEARNAGENT_HOME`, default `$XDG_DATA_HOME/learnagent` or ~/.local/share/learnagent):
  the episode store, adapters, worktrees. Tests point it at a tmp dir.
- cache (`LEARNAGENT_CACHE`, default `$XDG_CACHE_HOME/learnagent` or ~/.cache/learnagent):
  converted model folders, repo-map caches; safe to delete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def data_home() -> Path:
    env = os.environ.get("LEARNAGENT_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "learnagent"


def cache_home() -> Path:
    env = os.environ.get("LEARNAGENT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "learnagent"


def db_path() -> Path:
    return data_home() / "learnagent.db"


def repository_root(work_tree: Path) -> Path:
    """The repository's main working tree: `work_tree` itself, or for a linked worktree
    (`git worktree add`, learnagent's own or the user's) the main tree it belongs to."""
    from learnagent.core.gitdirs import main_worktree

    work_tree = Path(work_tree).resolve()
    return main_worktree(work_tree) or work_tree  # main_worktree gives a resolved path


def repo_key(repo_root: Path) -> str:
    """A stable short id for a repository, from the real path of its main working tree, so
    every worktree of one repository shares its episodes, outcomes and adapters."""
    real = str(repository_root(repo_root))
    return hashlib.sha1(real.encode()).hexdigest()[:12]


def worktrees_dir(repo_root: Path) -> Path:
    return data_home() / "worktrees" / repo_key(repo_root)


def adapters_dir(repo_root: Path) -> Path:
    return data_home() / "adapters" / repo_key(repo_root)


def models_dir() -> Path:
    return cache_home() / "models"
