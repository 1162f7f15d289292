"""Sandbox basics: modes and fallback, environment, timeouts, output caps, the path guard.

Escape attempts against the bubblewrap layer are in test_sandbox_escapes.py.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import psutil
import pytest

from learnagent.core.errors import LearnagentError, UsageError
from learnagent.sandbox import (CommandResult, PathOutsideWorktree, Sandbox, SandboxUnavailable, bwrap_available,
                                resolve_in_worktree)
from learnagent.sandbox import runner
from learnagent.sandbox.process import CappedBuffer
from sandbox_helpers import assert_nothing_left, make_worktree, token

KINDS = ["bwrap", "none"]


@pytest.fixture
def worktree(git_repo):
    return make_worktree(git_repo)


def make_sandbox(worktree, kind, **kw) -> Sandbox:
    if kind == "bwrap":
        if not bwrap_available():
            pytest.skip("bubblewrap (bwrap) is not installed or cannot run here")
        return Sandbox(worktree, mode="require", **kw)
    return Sandbox(worktree, mode="none", **kw)


# ---------------------------------------------------------------- modes and fallback

@pytest.fixture
def no_bwrap(monkeypatch):
    """The fallback path: bwrap reported unavailable, and the once-per-process warning not yet given."""
    monkeypatch.setattr(runner, "bwrap_available", lambda: False)
    monkeypatch.setattr(runner, "_warned_no_bwrap", False)


def test_auto_without_bwrap_warns_once_and_runs_unsandboxed(worktree, no_bwrap):
    said = []
    sb = Sandbox(worktree, mode="auto", on_warning=said.append)
    res1 = sb.run("echo one")
    res2 = sb.run("echo two")
    Sandbox(worktree, mode="auto", on_warning=said.append)  # a second Sandbox in the same process
    assert sb.kind == "none"
    assert len(said) == 1 and "bubblewrap" in said[0] and "\n" not in said[0]
    assert (res1.output, res2.output) == ("one\n", "two\n")
    assert not res1.sandboxed and res1.exit_code == 0


def test_auto_without_callback_uses_warnings(worktree, no_bwrap):
    with pytest.warns(RuntimeWarning, match="bubblewrap"):
        Sandbox(worktree, mode="auto")


def test_mode_none_is_silent(worktree):
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb = Sandbox(worktree, mode="none", on_warning=said.append)
    assert said == [] and sb.kind == "none"
    assert sb.run("true").sandboxed is False


def test_mode_require_refuses_without_bwrap(worktree, no_bwrap):
    with pytest.raises(SandboxUnavailable) as err:
        Sandbox(worktree, mode="require")
    assert isinstance(err.value, LearnagentError)
    assert "bwrap" in str(err.value) and "\n" not in str(err.value)


def test_bad_mode_and_missing_worktree(worktree, tmp_path):
    with pytest.raises(UsageError, match="sandbox mode 'jail'"):
        Sandbox(worktree, mode="jail")
    with pytest.raises(LearnagentError, match="not a folder"):
        Sandbox(tmp_path / "missing")


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) is not installed or cannot run here")
def test_auto_with_bwrap_uses_it(worktree):
    said = []
    sb = Sandbox(worktree, on_warning=said.append)
    assert sb.kind == "bwrap" and said == []
    assert sb.run("true").sandboxed is True


# ---------------------------------------------------------------- running commands

@pytest.mark.parametrize("kind", KINDS)
def test_runs_in_worktree_with_exit_code_and_stderr(worktree, kind):
    sb = make_sandbox(worktree, kind)
    res = sb.run("pwd; echo to-stderr >&2; exit 3")
    assert isinstance(res, CommandResult)
    assert res.exit_code == 3 and not res.timed_out and not res.truncated
    assert res.output.splitlines() == [str(worktree.resolve()), "to-stderr"]
    assert res.duration_s >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_stdin_is_closed(worktree, kind):
    res = make_sandbox(worktree, kind).run("cat; echo after", timeout=10)
    assert res.output == "after\n" and not res.timed_out


@pytest.mark.parametrize("kind", KINDS)
def test_environment_is_minimal(worktree, kind, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    sb = make_sandbox(worktree, kind, env={"EXTRA_VAR": "given"})
    res = sb.run("env")
    env = dict(line.split("=", 1) for line in res.output.splitlines() if "=" in line)
    assert "OPENAI_API_KEY" not in env and "sk-should-not-leak" not in res.output
    assert env["EXTRA_VAR"] == "given" and env["LANG"] == "C.UTF-8"
    assert env["HOME"] != os.environ.get("HOME")
    assert env["PATH"].split(":")[0] == str(Path(sys.prefix) / "bin")
    # HOME is private and writable, and lasts across the Sandbox's commands.
    assert sb.run("echo kept > ~/note").exit_code == 0
    assert sb.run("cat ~/note").output == "kept\n"
    # The venv's python is the one found, so `python -m pytest` works in the worktree.
    res = sb.run("python -c 'import sys; print(sys.prefix)'")
    assert res.output.strip() == sys.prefix
    res = sb.run("python -m pytest -q -p no:cacheprovider", timeout=120)
    assert res.exit_code == 0 and "1 passed" in res.output


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_kills_command_and_grandchildren(worktree, kind):
    mark = token()
    # `exec -a NAME` puts the marker in each process's command line: a child, a grandchild
    # whose parent already exited (reparented away from us), and the main process itself.
    cmd = (f"(exec -a sleeper-{mark} sleep 1000) & (bash -c '(exec -a sleeper2-{mark} sleep 1000) &'); "
           f"exec -a main-{mark} sleep 1000")
    res = make_sandbox(worktree, kind).run(cmd, timeout=1)
    assert res.timed_out and res.exit_code is None
    assert res.duration_s < 6
    assert_nothing_left(mark)


@pytest.mark.parametrize("kind", KINDS)
def test_term_ignoring_command_is_killed(worktree, kind):
    mark = token()
    res = make_sandbox(worktree, kind).run(f"trap '' TERM; echo started; (exec -a sl-{mark} sleep 1000)", timeout=1)
    assert res.timed_out and res.output == "started\n"
    assert res.duration_s < 6
    assert_nothing_left(mark)


@pytest.mark.parametrize("kind", KINDS)
def test_background_leftovers_are_killed_at_exit(worktree, kind):
    mark = token()
    res = make_sandbox(worktree, kind).run(f"(exec -a bg-{mark} sleep 1000) & echo done", timeout=30)
    assert res.exit_code == 0 and res.output == "done\n"
    assert res.duration_s < 10  # did not wait for the timeout
    assert_nothing_left(mark)


@pytest.mark.parametrize("kind", KINDS)
def test_large_output_keeps_head_and_tail(worktree, kind):
    res = make_sandbox(worktree, kind).run("seq 1 200000", output_cap=1000)
    assert res.exit_code == 0 and res.truncated and not res.timed_out
    assert res.output.startswith("1\n2\n3\n")
    assert res.output.endswith("199999\n200000\n")
    assert "output truncated" in res.output
    assert len(res.output) < 1000 + 200


@pytest.mark.parametrize("kind", KINDS)
def test_runaway_output_is_bounded(worktree, kind):
    mark = token()
    rss_before = psutil.Process().memory_info().rss
    res = make_sandbox(worktree, kind).run(f"exec -a yes-{mark} yes", timeout=2, output_cap=5000)
    assert res.timed_out and res.truncated
    assert len(res.output) < 5000 + 200
    assert res.output.startswith("y\ny\n") and "output truncated" in res.output
    total = int(res.output.split(" of ")[1].split(" bytes")[0])
    assert total > 10_000_000  # it really produced a flood...
    assert psutil.Process().memory_info().rss - rss_before < 100 * 2**20  # ...that we did not keep
    assert_nothing_left(mark)


def test_capped_buffer_exact_fit_and_split():
    buf = CappedBuffer(10)
    buf.add(b"0123456789")
    assert not buf.truncated and buf.text() == "0123456789"
    buf = CappedBuffer(10)
    for ch in b"abcdefghijklmnopqrstuvwxyz":
        buf.add(bytes([ch]))
    assert buf.truncated
    assert buf.text().startswith("abcde\n[... output truncated: 16 of 26 bytes omitted ...]\n")
    assert buf.text().endswith("vwxyz")


def test_closed_sandbox_refuses_and_cleans_up(worktree):
    sb = Sandbox(worktree, mode="none")
    tmp = sb.private_tmp
    assert tmp.is_dir()
    sb.close()
    assert not tmp.exists()
    with pytest.raises(LearnagentError, match="closed"):
        sb.run("true")


# ---------------------------------------------------------------- path guard

def test_path_guard_accepts_paths_inside(worktree):
    root = worktree.resolve()
    assert resolve_in_worktree(worktree, "calc.py") == root / "calc.py"
    assert resolve_in_worktree(worktree, "./pkg/../calc.py") == root / "calc.py"
    assert resolve_in_worktree(worktree, "new/dir/file.py") == root / "new/dir/file.py"  # may not exist yet
    assert resolve_in_worktree(worktree, str(root / "calc.py")) == root / "calc.py"
    assert resolve_in_worktree(worktree, ".") == root
    assert resolve_in_worktree(worktree, ".gitignore") == root / ".gitignore"  # not metadata
    (worktree / "link.py").symlink_to("calc.py")
    assert resolve_in_worktree(worktree, "link.py") == root / "calc.py"


@pytest.mark.parametrize("bad", ["../outside.txt", "a/../../x", "/etc/passwd", "/", ""])
def test_path_guard_refuses_outside(worktree, bad):
    with pytest.raises(PathOutsideWorktree) as err:
        resolve_in_worktree(worktree, bad)
    assert isinstance(err.value, LearnagentError) and "\n" not in str(err.value)


@pytest.mark.parametrize("meta", [".git", ".git/config", "./.git", "sub/.git/HEAD", ".GIT/config"])
def test_path_guard_refuses_git_metadata(worktree, meta):
    with pytest.raises(PathOutsideWorktree, match="git metadata"):
        resolve_in_worktree(worktree, meta)


def test_path_guard_refuses_symlinks_out(worktree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (worktree / "escape").symlink_to(outside)
    (worktree / "gitlink").symlink_to(".git")
    (worktree / "loop").symlink_to("loop")
    with pytest.raises(PathOutsideWorktree, match="symlink"):
        resolve_in_worktree(worktree, "escape/secret.txt")
    with pytest.raises(PathOutsideWorktree, match="symlink"):
        resolve_in_worktree(worktree, "escape/new-file.txt")
    with pytest.raises(PathOutsideWorktree):
        resolve_in_worktree(worktree, "gitlink")  # points at the .git file
    with pytest.raises(PathOutsideWorktree):
        resolve_in_worktree(worktree, "loop/x")


@pytest.mark.parametrize("kind", KINDS)
def test_interrupted_run_leaves_nothing(worktree, kind):
    """Ctrl-C while a command runs: the exception propagates and the process tree is gone."""
    import signal

    sb = make_sandbox(worktree, kind)
    mark = token()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            sb.run(f"(exec -a int-{mark} sleep 1000) & exec -a main-{mark} sleep 1000", timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert_nothing_left(mark)


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) is not installed or cannot run here")
def test_interpreter_under_tmp_stays_visible(worktree, tmp_path, monkeypatch):
    """A venv under /tmp would vanish behind the private /tmp; it is bound back read-only."""
    from learnagent.sandbox import policy

    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "marker").write_text("visible")
    monkeypatch.setattr(policy, "interpreter_roots", lambda: [venv.resolve()])
    res = Sandbox(worktree, mode="require").run(f"cat {venv}/marker; echo x > {venv}/marker")
    assert res.output.startswith("visible") and "Read-only file system" in res.output
    assert (venv / "marker").read_text() == "visible"
