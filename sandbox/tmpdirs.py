"""A Sandbox's private tmp folder on the host, and finding the ones a killed process left behind.

Each Sandbox gets `learnagent-sandbox-<pid>.<start>-XXXXXXXX` in the system tmp dir (mode 0700;
it is /tmp and HOME inside bubblewrap) and removes it when it closes. After `kill -9` or a power
cut nothing removes it, and it may hold whatever the agent's commands left in /tmp (build
trees, downloaded packages, copies of the repository's files). `learnagent gc` removes the
orphans: the owner is in the folder's name, which the sandboxed command cannot change (the
folder is its own mount point), and a folder whose owner is gone from this host is an orphan.
`<start>` is the owner's start time (clock ticks since boot, from /proc), so a pid reused by an
unrelated process does not keep an orphan alive.

Folders named by older versions (no owner in the name) count as orphans once untouched for
LEGACY_AGE_S; nothing else in the tmp dir is ever considered.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from learnagent.core.processes import pid_alive

PREFIX = "learnagent-sandbox-"
LEGACY_AGE_S = 24 * 3600
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)\.(\d+)-[A-Za-z0-9_]+$")
_LEGACY = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_]{8}$")


def process_start(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return 0


def make_private_tmp() -> Path:
    """A new private tmp folder (mode 0700) named after this process."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}.{process_start(pid)}-"))


def orphan_reason(path: Path, now: float | None = None) -> str | None:
    """Why `path` is an orphaned sandbox tmp folder, or None when it is not one (or not ours to judge)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None  # a symlink, a file, or another user's folder: never touched
    m = _OWNED.match(path.name)
    if m:
        pid, start = int(m.group(1)), int(m.group(2))
        if not pid_alive(pid):
            return f"its process {pid} is gone"
        now_start = process_start(pid)
        if start and now_start and now_start != start:
            return f"its process {pid} is gone (the pid now belongs to another process)"
        return None
    if _LEGACY.match(path.name):
        age = (time.time() if now is None else now) - st.st_mtime
        if age > LEGACY_AGE_S:
            return f"left by an older learnagent, untouched for {age / 3600:.0f} h"
    return None


def orphans(tmp_root: Path | None = None, now: float | None = None) -> list[tuple[Path, str]]:
    """(folder, reason) for every orphaned sandbox tmp folder under the system tmp dir."""
    root = Path(tmp_root or tempfile.gettempdir())
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(PREFIX):
            reason = orphan_reason(root / name, now)
            if reason:
                found.append((root / name, reason))
    return found


def remove_tree(path: Path | str) -> bool:
    """Remove `path`, also where a command made folders unreadable (chmod 000); True when it is gone.
    Symlinks inside are removed, never followed."""
    path = str(path)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        os.chmod(path, 0o700)
    except OSError:
        return not os.path.lexists(path)
    for dirpath, dirnames, _files in os.walk(path):  # top-down: a folder is opened after its chmod
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            try:
                if not os.path.islink(sub):
                    os.chmod(sub, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)
