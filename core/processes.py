"""Process liveness, shared by the sandbox (stale cgroups) and gc (dead episodes)."""

from __future__ import annotations

import os


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot, Linux /proc), so that a pid the system
    has since given to another process is not taken for the one recorded; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime; comm may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` runs; with `started` (its `process_start`), only if it is still that process."""
    if started is not None:
        now = process_start(pid)
        if now is not None and now != started:
            return False  # the pid was reused
    return _exists(pid)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OverflowError, ValueError):
        return False
    return True
