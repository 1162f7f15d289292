"""Run the real `learnagent` CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, env: dict | None = None, input: str | None = None, timeout: int = 120):
    full_env = dict(os.environ, **(env or {}))
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")
    full_env.setdefault("COLUMNS", "120")
    return subprocess.run([sys.executable, "-m", "learnagent.cli.app", *args], cwd=cwd, capture_output=True,
                          text=True, env=full_env, input=input, timeout=timeout)


def write_script(path: Path, responses: list) -> Path:
    path.write_text(json.dumps({"responses": responses}))
    return path


def run_cli_tty(args: list[str], cwd: Path, answer: str | None = None, timeout: int = 120, columns: int = 120,
                env: dict | None = None) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal `columns` wide (so it prompts and renders as for a user),
    typing `answer` once it asks [a/r/k]. COLUMNS is unset: the width comes from the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    full_env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"], **(env or {}))
    full_env.pop("COLUMNS", None)
    full_env.pop("LINES", None)
    proc = subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", *args], cwd=cwd, stdin=slave,
                            stdout=slave, stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    screen, answered, deadline = b"", answer is None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            if not answered and b"[a/r/k]" in screen:
                os.write(master, answer.encode())
                answered = True
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), screen.decode(errors="replace")


def plain(screen: str) -> list[str]:
    """A terminal screen's lines without colours and cursor codes, as a user reads them."""
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", screen).replace("\r\n", "\n").replace("\r", "")
    return text.split("\n")
