"""Process liveness, shared by the sandbox (stale cgroups) and gc (dead episodes)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OverflowError, ValueError):
        return False
    return True
