"""Process-count limits that contain fork bombs.

What works where (measured on the build machine, see tests/test_sandbox_escapes.py):
- A cgroup `pids` controller we can write to (cgroup v1 `/sys/fs/cgroup/pids`, or a v2
  delegated subtree with `pids` enabled): the command is moved into a fresh child cgroup
  with `pids.max` before it execs. This bounds processes *and* threads for the whole tree,
  including processes that left the process group (setsid) or live in bwrap's pid
  namespace, and lets us kill every member at the end. Works for root; usually unavailable
  to unprivileged users without systemd delegation.
- RLIMIT_NPROC (prlimit): per *user*, ignored for root (CAP_SYS_RESOURCE) - so it is set
  only for non-root users, as (tasks the user already runs + max_pids).
- Always: the timeout, then SIGKILL to the process group and (with bwrap) teardown of the
  pid namespace, which kills every process inside it.
"""

from __future__ import annotations

import atexit
import itertools
import os
import resource
import signal
import time
from pathlib import Path

from learnagent.core.processes import pid_alive

_counter = itertools.count()
_active: set[str] = set()  # names of this process's cgroups in use (threads may run commands concurrently)

V1_PIDS_ROOT = Path("/sys/fs/cgroup/pids")
V2_ROOT = Path("/sys/fs/cgroup")


class PidsCgroup:
    """A throwaway pids cgroup for one command: create, join (in the child), kill all, remove."""

    def __init__(self, path: Path):
        self.path = path
        # Opened in the parent: the child's pre-exec hook must not allocate or take locks.
        self._procs_fd = os.open(path / "cgroup.procs", os.O_WRONLY)

    @classmethod
    def create(cls, max_pids: int) -> "PidsCgroup | None":
        """A new cgroup limited to `max_pids` tasks, or None when no writable pids controller exists."""
        name = f"learnagent-{os.getpid()}-{next(_counter)}"
        for parent in _candidate_parents():
            _sweep_stale(parent)
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(max_pids))
                _active.add(name)
                return cls(path)
            except OSError:
                _rmdir_quietly(path)
        return None

    def join_from_child(self) -> None:
        """Pre-exec hook: move the calling (child) process into the cgroup. Async-signal-safe enough."""
        os.write(self._procs_fd, b"0")  # "0" means the writing process itself

    def members(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self, deadline_s: float = 5.0) -> bool:
        """SIGKILL every member until the cgroup is empty; True when it emptied in time."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            pids = self.members()
            if not pids:
                return True
            for pid in pids:  # new forks are bounded by pids.max, so this converges
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        return not self.members()

    def signal_all(self, sig: int) -> None:
        for pid in self.members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        _active.discard(self.path.name)
        try:
            os.close(self._procs_fd)
        except OSError:
            pass
        # Members are zombies for a moment after SIGKILL until reaped; rmdir fails with EBUSY
        # then. If they take longer (a fork bomb's orphans wait for init), a later create() sweeps it.
        for _ in range(200):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def _sweep_stale(parent: Path) -> None:
    """Remove empty cgroups left by earlier commands whose close() gave up (slow reaping after a
    fork bomb) or by a learnagent process that died. A live owner's busy cgroup fails rmdir."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith("learnagent-") and e.is_dir()]
    except OSError:
        return
    for entry in entries:
        try:
            owner = int(entry.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        # Never touch a live process's cgroup: between mkdir and the child joining it is empty.
        if owner == os.getpid():
            if entry.name in _active:
                continue
        elif pid_alive(owner):
            continue
        _rmdir_quietly(Path(entry.path))


@atexit.register
def _sweep_at_exit() -> None:
    for parent in _candidate_parents():
        _sweep_stale(parent)


def _candidate_parents() -> list[Path]:
    parents = []
    if (V1_PIDS_ROOT / "cgroup.procs").exists():
        parents.append(V1_PIDS_ROOT)
    own = _own_v2_cgroup()
    if own is not None and "pids" in _read(own / "cgroup.subtree_control").split():
        parents.append(own)
    return [p for p in parents if os.access(p, os.W_OK)]


def _own_v2_cgroup() -> Path | None:
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        if line.startswith("0::"):
            path = V2_ROOT / line[3:].lstrip("/")
            if (path / "cgroup.procs").exists() and (path / "cgroup.subtree_control").exists():
                return path
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def user_task_count(uid: int) -> int:
    """Tasks (processes + threads) owned by `uid`: what RLIMIT_NPROC is compared against."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields.get("Threads", "1"))
        except (OSError, KeyError, ValueError):
            continue
    return total


def nproc_limit_for(max_pids: int) -> int | None:
    """The RLIMIT_NPROC to set in the child, or None where it would not help (root)."""
    uid = os.getuid()
    if uid == 0:
        return None  # root ignores RLIMIT_NPROC
    return user_task_count(uid) + max_pids


def apply_nproc_limit(limit: int) -> None:
    """Pre-exec hook: lower RLIMIT_NPROC in the child (never raise it above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, hard))
