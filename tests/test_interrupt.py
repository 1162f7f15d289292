"""Interrupted `learnagent do` runs leave nothing behind, and gc finds what a killed one left.

Real CLI processes (scripted model), real git and SQLite: the output closed under `do` (as
`learnagent do ... | head -3` does), Ctrl-C while a command runs, Ctrl-C at the verdict prompt,
and SIGKILL at the prompt (only gc can clean that up).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.core.repository import Repository

EDIT = ("<edit path=\"calc.py\">\n<<<<<<< SEARCH\ndef add(a, b):\n    return a + b\n=======\n"
        "def add(a, b):\n    return b + a\n>>>>>>> REPLACE\n</edit>")


def _env() -> dict:
    return dict(os.environ, COLUMNS="120", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])


def _argv(script: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "learnagent.cli.app", "do", "swap the operands", "--model", f"scripted:{script}",
            "--sandbox", "none", *extra]


def _episodes() -> list[dict]:
    with sqlite3.connect(home.db_path()) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM episodes")]


def _leftovers(repo: Path) -> tuple[str, list[str]]:
    folder = Repository.at(repo).worktrees_dir
    return (git(repo, "branch", "--list", "learnagent/*").strip(),
            sorted(p.name for p in folder.iterdir()) if folder.exists() else [])


def _stderr_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def _wait_for(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_output_closed_under_do_interrupts_and_cleans_up(git_repo, tmp_path):
    """`learnagent do ... | head`: the reader goes away in the middle of the run."""
    script = write_script(tmp_path / "s.json", [EDIT, "<run>sleep 1; echo slow</run>", "<finish>swapped</finish>"])
    proc = subprocess.Popen(_argv(script, "--yes"), cwd=git_repo, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while "step 1" not in proc.stdout.readline():
        pass
    for _ in range(3):
        assert proc.stdout.readline()
    proc.stdout.close()  # what `head` does when it has its lines
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    [ep] = _episodes()
    assert _stderr_line(err) == f"interrupted, episode {ep['id']}"
    assert code == 141
    assert ep["status"] == "interrupted" and "output was closed" in ep["error"] and ep["outcome"] == "pending"
    assert _leftovers(git_repo) == ("", [])
    assert "def add(a, b):\n    return a + b\n" == (git_repo / "calc.py").read_text()  # nothing applied
    gc = run_cli("gc", "--dry-run", cwd=git_repo)
    assert gc.returncode == 0 and "Nothing to clean up" in gc.stdout


def test_output_closed_before_the_run_is_a_quiet_exit(git_repo, tmp_path):
    """`learnagent do ... | true`: the reader is gone before the first line, so nothing was started,
    nothing is recorded and nothing is left."""
    script = write_script(tmp_path / "s.json", [EDIT, "<finish>swapped</finish>"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.Popen(_argv(script, "--yes"), cwd=git_repo, env=_env(), stdout=write_end,
                            stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Error" not in err, err
    assert not home.db_path().exists() or _episodes() == []
    assert _leftovers(git_repo) == ("", [])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_while_a_command_runs(git_repo, tmp_path, sig):
    """SIGTERM (`kill`, a service manager stopping it) ends a run as Ctrl-C does (README: 130)."""
    marker = tmp_path / "started"
    script = write_script(tmp_path / "s.json", [EDIT, f"<run>touch {marker}; sleep 60</run>", "<finish>x</finish>"])
    proc = subprocess.Popen(_argv(script, "--yes"), cwd=git_repo, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_interactive)
    assert _wait_for(marker.exists)
    started = time.monotonic()
    proc.send_signal(sig)
    err = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert time.monotonic() - started < 30  # the command was stopped, not waited for
    [ep] = _episodes()
    assert code == 130 and _stderr_line(err) == f"interrupted, episode {ep['id']}"
    assert ep["status"] == "interrupted"
    assert _leftovers(git_repo) == ("", [])


def _interactive():
    """The child's SIGINT as a terminal user's shell leaves it. A shell that starts a job in the
    background without job control (`cmd &` in a script, nohup, some CI runners) sets SIGINT to
    ignored, and an ignored signal stays ignored across exec: `do` then rightly never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pty_do(repo: Path, script: Path) -> tuple[subprocess.Popen, int, bytes]:
    """`do` on a terminal, left at its verdict prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(_argv(script), cwd=repo, stdin=slave, stdout=slave, stderr=slave, env=_env(),
                            close_fds=True, preexec_fn=_interactive)
    os.close(slave)
    screen, deadline = b"", time.monotonic() + 120
    while b"[a/r/k]" not in screen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                screen += os.read(master, 4096)
            except OSError:
                break
    assert b"[a/r/k]" in screen, screen.decode(errors="replace")
    return proc, master, screen


def _drain(master: int, proc: subprocess.Popen, timeout: float = 120.0) -> str:
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return out.decode(errors="replace")


def test_ctrl_c_at_the_verdict_prompt(git_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [EDIT, "<finish>swapped</finish>"])
    proc, master, _ = _pty_do(git_repo, script)
    [ep] = _episodes()
    assert ep["status"] == "finished" and _leftovers(git_repo)[0]  # the branch waits for the verdict
    proc.send_signal(signal.SIGINT)
    after = _drain(master, proc)
    assert proc.wait(timeout=60) == 130
    assert f"interrupted, episode {ep['id']}" in after and "Traceback" not in after
    [ep] = _episodes()
    assert ep["status"] == "interrupted" and ep["final_diff"]  # the diff stays for `learnagent show`
    assert _leftovers(git_repo) == ("", [])


def test_gc_finds_a_run_killed_at_the_prompt(git_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [EDIT, "<finish>swapped</finish>"])
    proc, master, _ = _pty_do(git_repo, script)
    gc = run_cli("gc", "--dry-run", cwd=git_repo)
    assert "Nothing to clean up" in gc.stdout  # its `do` is alive and asking: not an orphan
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    os.close(master)
    [ep] = _episodes()
    assert ep["status"] == "finished" and ep["outcome"] == "pending"
    branch, folders = _leftovers(git_repo)
    assert branch and folders == [ep["id"]]
    gc = run_cli("gc", "--dry-run", cwd=git_repo)
    assert gc.returncode == 0 and ep["id"] in gc.stdout and "before the verdict" in gc.stdout
    gc = run_cli("gc", cwd=git_repo)
    assert gc.returncode == 0 and "(failed)" not in gc.stdout
    assert _leftovers(git_repo) == ("", [])
    [ep] = _episodes()
    assert ep["status"] == "interrupted" and "found by gc" in ep["error"]


def test_a_reused_pid_does_not_keep_an_orphan_alive(git_repo):
    """The recorded pid now belongs to another process (here: this test's own): its start time differs."""
    from learnagent.services.gc import run_is_live
    from learnagent.core.processes import process_start

    mine = process_start(os.getpid())
    assert isinstance(mine, int)
    assert run_is_live({"pid": os.getpid(), "pid_start": mine})
    assert not run_is_live({"pid": os.getpid(), "pid_start": mine - 1})
    assert run_is_live({"pid": os.getpid()})  # older episodes: the pid alone


def _orphans(repo: Path, n: int) -> list[str]:
    """`n` episodes whose `do` died (running, or finished and waiting for a verdict nobody can
    give), each with its folder and branch, as a crash or `kill -9` leaves them."""
    import socket

    from learnagent.agent.worktree import create_worktree
    from learnagent.store.episodes import Store

    dead = subprocess.Popen(["true"])
    dead.wait()
    head = git(repo, "rev-parse", "HEAD").strip()
    ids = [f"2611300{i:05d}orphan{i:02d}" for i in range(n)]
    with Store() as store:
        rid = store.ensure_repo(Repository.at(repo))
        for i, eid in enumerate(ids):
            path, branch = create_worktree(Repository.at(repo), eid, head)
            store.create_episode(rid, "t", base_commit=head, branch=branch, worktree=str(path), episode_id=eid,
                                 meta={"pid": dead.pid, "host": socket.gethostname()})
            if i % 2:
                store.finish_episode(eid, "finished")
    return ids


@pytest.mark.parametrize("columns", [80, 120])
def test_gc_lists_every_orphan_on_one_line_at_any_width(git_repo, private_system_tmp, columns):
    from cli_helpers import plain, run_cli_tty

    ids = _orphans(git_repo, 4)
    tmp_orphan = private_system_tmp / "learnagent-sandbox-999999999.1-abcdefgh"  # no such pid
    tmp_orphan.mkdir()
    code, screen = run_cli_tty(["gc", "--dry-run"], cwd=git_repo, columns=columns)
    lines = [ln.rstrip() for ln in plain(screen) if ln.strip()]
    assert code == 0 and "Traceback" not in screen, screen
    for eid in ids:  # one line each, the id whole (copyable into show/forget), what goes and why
        [line] = [ln for ln in lines if eid in ln]
        assert "folder, branch" in line and ("died" in line or "before the verdict" in line), line
        assert len(line) <= columns
    assert "would be marked interrupted" in screen
    assert "sandbox tmp" in screen and [ln for ln in lines if tmp_orphan.name in ln and "999999999 is gone" in ln]
    folders = Repository.at(git_repo).worktrees_dir
    assert f"{folders}/<episode>" in screen.replace("\r\n", "")  # the terminal wraps it, not rich


def test_gc_piped_into_head_removes_every_orphan(git_repo):
    """`learnagent gc | head -3`: gc removes everything first; the closed output is no error."""
    ids = _orphans(git_repo, 12)
    piped = run_cli("gc", "--dry-run", cwd=git_repo)
    assert piped.returncode == 0 and all(len([ln for ln in piped.stdout.splitlines() if eid in ln]) == 1
                                         for eid in ids), piped.stdout
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before gc prints a line
    proc = subprocess.run([sys.executable, "-m", "learnagent.cli.app", "gc"], cwd=git_repo, env=_env(),
                          stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert _leftovers(git_repo) == ("", [])
    assert {ep["status"] for ep in _episodes()} == {"interrupted"}
    head = subprocess.run(f"{sys.executable} -m learnagent.cli.app gc --dry-run | head -3", shell=True, cwd=git_repo,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert "Nothing to clean up" in head.stdout and head.stderr == ""


def _controlling_tty():  # the pty becomes the child's terminal: ^C typed there is SIGINT to `do`
    import fcntl
    import termios

    _interactive()
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


SANDBOXES = ["none"] + (["require"] if __import__("learnagent.sandbox.runner", fromlist=["x"]).bwrap_available() else [])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_ctrl_c_typed_on_the_terminal_while_a_sandboxed_command_runs(git_repo, tmp_path, sandbox):
    """The user presses Ctrl-C on the terminal (not a signal sent to one pid) while the agent's
    command runs, with and without bubblewrap: one line, exit 130, the episode folder (its own
    .git included) and branch gone, the record says interrupted."""
    # the command leaves a mark in its episode folder (all that the sandbox lets it write)
    script = write_script(tmp_path / "s.json", [EDIT, "<run>touch started; sleep 60</run>", "<finish>x</finish>"])
    argv = [a if a != "none" else sandbox for a in _argv(script, "--yes")]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=git_repo, stdin=slave, stdout=slave, stderr=slave, env=_env(),
                            close_fds=True, preexec_fn=_controlling_tty)
    os.close(slave)
    screen = b""

    def started() -> bool:
        nonlocal screen
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            screen += os.read(master, 4096)
        return any((f / "started").exists() for f in Repository.at(git_repo).worktrees_dir.glob("*"))

    assert _wait_for(started), screen.decode(errors="replace")
    os.write(master, b"\x03")  # Ctrl-C
    after = _drain(master, proc)
    assert proc.wait(timeout=60) == 130
    [ep] = _episodes()
    assert f"interrupted, episode {ep['id']}" in after and "Traceback" not in after, after
    assert ep["status"] == "interrupted" and _leftovers(git_repo) == ("", [])
