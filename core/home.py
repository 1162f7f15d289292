"""Where learnagent keeps its files.

- data home (`LEARNAGENT_HOME`, default `$XDG_DATA_HOME/learnagent` or ~/.local/share/learnagent):
  the episode store, adapters, worktrees. Tests point it at a tmp dir.
- cache (`LEARNAGENT_CACHE`, default `$XDG_CACHE_HOME/learnagent` or ~/.cache/learnagent):
  converted model folders, repo-map caches; safe to delete.

The data home holds what the agent saw of the user's code, so it is private: mode 0700, and
the store's files 0600 (`make_private`). A data home made earlier with looser modes is tightened
once, with one line on stderr saying so; one that looks shared (sticky bit, the user's home
directory, owned by someone else) is left alone with a warning instead.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


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


def models_dir() -> Path:
    return cache_home() / "models"


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (before a library creates it 0644)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass


def make_private(paths: list[Path], why: str = "it holds your episodes", quiet: bool = False) -> list[str]:
    """Take group and other permissions off the existing folders and files among `paths` (folders 0700,
    files 0600 at most). Unless quiet, says once on stderr what it changed and what it would not change
    (not the owner's, or a folder that looks shared); returns those lines."""
    changed, refused = [], []
    for path in map(Path, paths):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue  # never chmod through a link
        mode = stat.S_IMODE(st.st_mode)
        is_dir = stat.S_ISDIR(st.st_mode)
        wanted = mode & (PRIVATE_DIR_MODE if is_dir else PRIVATE_FILE_MODE)
        if mode == wanted:
            continue
        if st.st_uid != os.geteuid():
            refused.append(f"{path} (owned by another user)")
        elif is_dir and (st.st_mode & stat.S_ISVTX or path.resolve() in (Path.home().resolve(), Path("/"))):
            refused.append(f"{path} (looks shared)")
        else:
            try:
                os.chmod(path, wanted)
                changed.append(f"{path} {mode:04o} -> {wanted:04o}")
            except OSError as exc:
                refused.append(f"{path} ({exc.strerror})")
    lines = []
    if changed:
        lines.append(f"learnagent: made private ({why}; other local users could read it): " + ", ".join(changed))
    if refused:
        lines.append("learnagent: warning: readable by other local users, not changed: " + ", ".join(refused)
                     + "; point LEARNAGENT_HOME at a folder of its own")
    if not quiet:
        for line in lines:
            print(line, file=sys.stderr)
    return lines
