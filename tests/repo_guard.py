"""Snapshot the user's repository byte for byte and check that an episode left it as it was.

`capture(repo)` records every entry under the repository folder, `.git` included: regular files
with their bytes and permission bits, symlinks with their targets, folders. `assert_intact`
compares a later capture with it and runs `git fsck --full --strict`.

What learnagent itself may add, and nothing else: new object files (`.git/objects/..`, the
episode's blobs, trees and commit: content-addressed, existing ones untouched) and the episode
branch `refs/heads/learnagent/<id>` with its reflog. Every file that existed before must be
byte-identical afterwards (config, hooks, HEAD, packed-refs, index, packs, loose objects, refs,
the working tree including untracked and ignored files).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

EPISODE_PREFIXES = (".git/refs/heads/learnagent/", ".git/logs/refs/heads/learnagent/", ".git/objects/")


def capture(repo: Path) -> dict[str, tuple]:
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(repo).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir",)
            else:
                state[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return state


def fsck(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "fsck", "--full", "--strict", "--no-dangling"], cwd=repo, capture_output=True,
                          text=True)


def assert_intact(repo: Path, before: dict[str, tuple], *, allow_episode_objects: bool = True,
                  applied: tuple[str, ...] = ()) -> None:
    """The repository is as `before` said, except for learnagent's own episode objects and branch
    (and the working-tree files in `applied`, which an accept wrote)."""
    after = capture(repo)
    allowed = EPISODE_PREFIXES if allow_episode_objects else ()
    changed = sorted(p for p in before if after.get(p) != before[p] and not _episode_ref(p) and p not in applied)
    added = sorted(p for p in after if p not in before and p not in applied
                   and not (p.startswith(allowed) or _episode_ref(p)))
    assert not changed, f"changed or removed in the user's repository: {changed[:10]}"
    assert not added, f"added to the user's repository: {added[:10]}"
    check = fsck(repo)
    assert check.returncode == 0 and "error" not in check.stderr.lower(), check.stderr


def _episode_ref(rel: str) -> bool:
    return rel.startswith(EPISODE_PREFIXES[:2]) or rel in (".git/refs/heads/learnagent", ".git/logs/refs/heads/learnagent")
