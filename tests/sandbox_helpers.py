"""Shared helpers for the sandbox tests: an episode-like worktree and leftover-process checks."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psutil

from learnagent.core import home
from learnagent.core.repository import Repository


def make_worktree(repo: Path, name: str = "ep1") -> Path:
    """An episode folder as `learnagent do` makes one (agent/worktree.py: its own `.git`, branch
    learnagent/<name> in the user's repository), under data_home()/worktrees/<key>/."""
    from learnagent.agent.worktree import create_worktree

    path, _ = create_worktree(Repository.at(repo), name, "HEAD")
    return path


def token() -> str:
    """A unique marker to put in a command line, so its processes can be found afterwards."""
    return "la" + uuid.uuid4().hex[:10]


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `marker`, this test process excluded."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_nothing_left(marker: str, wait_s: float = 3.0) -> None:
    """No process of the command survives it, and we hold no unreaped child (zombie)."""
    end = time.monotonic() + wait_s
    while processes_with(marker) and time.monotonic() < end:  # killed tasks need a moment to exit
        time.sleep(0.05)
    left = processes_with(marker)
    assert not left, f"leftover processes: {[(p.pid, p.name()) for p in left]}"
    children = psutil.Process().children(recursive=True)
    zombies = [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
    assert not zombies, f"unreaped children: {zombies}"
