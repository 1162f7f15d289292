"""A real `learnagent serve` in a child process for the serve tests (tests/test_serve*.py)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@contextlib.contextmanager
def running_serve(*args: str, cwd: Path, log_path: Path):
    """`learnagent serve --port 0 --threads 1 ARGS` started in `cwd`, as its `ServerInfo` once it has
    written `serve.json`; stopped with Ctrl-C's signal at the end (exit 0, state file gone)."""
    from learnagent.runtime import serving

    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", "serve", "--port", "0", "--threads", "1",
                             *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while (info := serving.running()) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"learnagent serve did not start (exit {proc.poll()}):\n{log.read()}")
        time.sleep(0.2)
    try:
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0 and serving.running() is None  # the state file went with it


def small_repo(path: Path) -> Path:
    """Another git repository at `path`: one file, one commit."""
    from conftest import git

    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.py").write_text("x = 1\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path
