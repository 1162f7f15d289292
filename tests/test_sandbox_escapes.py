"""Real escape attempts against the sandbox. Each test tries the attack and checks the host.

Files under /tmp would be hidden by the private /tmp alone, so targets that must be hidden by
a *specific* rule (secrets, read-only root) live under /var/tmp instead.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from learnagent.agent.worktree import user_repository_paths
from learnagent.core import home
from learnagent.core.repository import Repository
from learnagent.sandbox import PathOutsideWorktree, Sandbox, bwrap_available, resolve_in_worktree
from learnagent.sandbox import limits
from sandbox_helpers import assert_nothing_left, make_worktree, token

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) is not installed or cannot run here")


@pytest.fixture
def worktree(git_repo):
    return make_worktree(git_repo)


@pytest.fixture
def outside_tmp():
    """A folder outside /tmp (so the private /tmp does not hide it by accident)."""
    try:
        path = Path(tempfile.mkdtemp(prefix="la-escape-", dir="/var/tmp"))
    except OSError:
        pytest.skip("/var/tmp is not writable here")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def var_repo(git_repo, outside_tmp, monkeypatch):
    """The test repository and the learnagent data home moved out of /tmp, so that only the
    sandbox's own rules (not the private /tmp) can hide or protect them."""
    repo = outside_tmp / "repo"
    shutil.copytree(git_repo, repo, symlinks=True)
    monkeypatch.setenv("LEARNAGENT_HOME", str(outside_tmp / "lahome"))
    return repo


# ---------------------------------------------------------------- file system

@needs_bwrap
def test_cannot_write_outside_worktree(var_repo, tmp_path, outside_tmp):
    git_repo = var_repo
    worktree = make_worktree(git_repo)
    victim_tmp = tmp_path / "victim.txt"
    victim_var = outside_tmp / "victim.txt"
    for victim in (victim_tmp, victim_var):
        victim.write_text("original")
    sb = Sandbox(worktree, mode="require")
    res = sb.run(f"echo pwned > {victim_var}; echo pwned > {victim_tmp}; echo pwned > {git_repo}/calc.py; "
                 f"touch /usr/pwned-{token()}; echo ok-in-worktree > inside.txt")
    assert "Read-only file system" in res.output
    assert victim_tmp.read_text() == victim_var.read_text() == "original"
    assert "pwned" not in (git_repo / "calc.py").read_text()
    assert (worktree / "inside.txt").read_text() == "ok-in-worktree\n"  # the worktree itself is writable
    assert list(Path("/usr").glob("pwned-*")) == []


@needs_bwrap
def test_planted_secrets_are_hidden(worktree, outside_tmp, monkeypatch):
    fake_home = outside_tmp / "home"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / ".ssh" / "id_rsa").write_text("-----BEGIN FAKE KEY-----\n")
    (fake_home / ".aws").mkdir()
    (fake_home / ".aws" / "credentials").write_text("aws_secret_access_key=FAKE\n")
    (fake_home / ".netrc").write_text("machine x login u password FAKEPW\n")
    (fake_home / "notes.txt").write_text("harmless\n")
    monkeypatch.setenv("HOME", str(fake_home))
    sb = Sandbox(worktree, mode="require")
    res = sb.run(f"cat {fake_home}/.ssh/id_rsa; ls -A {fake_home}/.ssh; cat {fake_home}/.aws/credentials; "
                 f"cat {fake_home}/.netrc; cat {fake_home}/notes.txt; echo x > {fake_home}/.ssh/new_key")
    assert "FAKE KEY" not in res.output and "FAKE\n" not in res.output and "FAKEPW" not in res.output
    assert "harmless" in res.output  # the rest of home stays readable (read-only)
    assert not (fake_home / ".ssh" / "new_key").exists()
    assert (fake_home / ".ssh" / "id_rsa").read_text().startswith("-----BEGIN FAKE KEY")


@needs_bwrap
def test_data_home_is_hidden_except_own_worktree(var_repo):
    git_repo = var_repo
    worktree = make_worktree(git_repo)
    data = home.data_home()
    assert not str(data).startswith("/tmp/")
    (data / "learnagent.db").write_text("episode-db-contents")
    other = make_worktree(git_repo, "ep2")
    (other / "other-episode.txt").write_text("other-contents")
    res = Sandbox(worktree, mode="require").run(
        f"cat {data}/learnagent.db; ls {other}; cat {other}/other-episode.txt; ls {worktree}")
    assert "episode-db-contents" not in res.output and "other-contents" not in res.output
    assert "calc.py" in res.output  # our own worktree is there


@needs_bwrap
def test_git_works_but_hooks_and_config_are_read_only(var_repo):
    """Inside: the episode's own repository works (status, diff, add, commit). The user's `.git`
    (hooks, config, refs, objects) is not even visible, so nothing there can be written."""
    git_repo = var_repo
    worktree = make_worktree(git_repo)
    common = git_repo / ".git"
    before = {p: p.read_bytes() for p in common.rglob("*") if p.is_file()}
    sb = Sandbox(worktree, mode="require", hide=user_repository_paths(Repository.at(git_repo)))
    res = sb.run("echo '# changed' >> calc.py && git add -A && git status --short && git diff --cached --stat "
                 "&& git commit -qm mine && git log --oneline | wc -l")
    assert res.exit_code == 0, res.output
    assert "M  calc.py" in res.output and "1 insertion" in res.output and res.output.endswith("2\n")
    attack = sb.run(f"ls {common}; echo 'touch /pwned' > {common}/hooks/post-commit; chmod +x {common}/hooks/post-commit; "
                    f"git --git-dir={common} config core.fsmonitor 'touch /pwned'; echo x > {common}/refs/heads/main; "
                    f"cat {git_repo}/calc.py; mkdir -p {common}/hooks; echo x > {git_repo}/planted")
    assert f"cannot access '{common}': No such file or directory" in attack.output, attack.output
    assert "Read-only file system" in attack.output, attack.output  # nor can anything be created there
    assert "def add" not in attack.output  # the user's working tree is not there to read either
    assert not (common / "hooks" / "post-commit").exists() and not (git_repo / "planted").exists()
    assert {p: p.read_bytes() for p in common.rglob("*") if p.is_file()} == before
    assert sb.run("git status --short").exit_code == 0


@needs_bwrap
def test_hidden_folder_keeps_the_interpreter_usable(worktree):
    """Hiding a folder that holds the venv (learnagent run on its own repository) keeps `python`
    working: the interpreter is bound read-only again, and nothing else of the folder shows."""
    import sys

    around = Path(sys.prefix).resolve().parent
    res = Sandbox(worktree, mode="require", hide=[around]).run(f"python -c 'print(42)'; ls -A {around}")
    assert res.exit_code == 0 and res.output.splitlines() == ["42", Path(sys.prefix).resolve().name], res.output


@needs_bwrap
def test_symlink_out_of_worktree(worktree, outside_tmp):
    target = outside_tmp / "target"
    target.mkdir()
    (target / "existing.txt").write_text("original")
    (worktree / "escape").symlink_to(target)
    with pytest.raises(PathOutsideWorktree):
        resolve_in_worktree(worktree, "escape/existing.txt")
    res = Sandbox(worktree, mode="require").run("echo pwned > escape/existing.txt; echo new > escape/new.txt; "
                                                 "ln -sf /var/tmp escape2 && echo y > escape2/pwned-$$")
    assert "Read-only file system" in res.output
    assert (target / "existing.txt").read_text() == "original"
    assert not (target / "new.txt").exists()
    assert not list(Path("/var/tmp").glob("pwned-*"))


@needs_bwrap
def test_cannot_regain_privileges(worktree):
    res = Sandbox(worktree, mode="require").run(
        "grep CapEff /proc/self/status; mount -o remount,rw / && echo REMOUNTED; unshare -m true && echo UNSHARED")
    assert "CapEff:\t0000000000000000" in res.output
    assert "REMOUNTED" not in res.output and "UNSHARED" not in res.output


# ---------------------------------------------------------------- network

@pytest.fixture
def loopback_server():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (socket.timeout, OSError):
                continue
            accepted.append(1)
            conn.sendall(b"hello-from-host\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


CONNECT = ("python -c \"import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=3); "
           "print(s.recv(100).decode())\"")


@needs_bwrap
def test_network_is_off_by_default(worktree, loopback_server):
    port, accepted = loopback_server
    res = Sandbox(worktree, mode="require").run(CONNECT.format(port=port), timeout=20)
    assert res.exit_code != 0 and "hello-from-host" not in res.output
    assert accepted == []


@needs_bwrap
def test_network_opt_in_allows_connections(worktree, loopback_server):
    port, accepted = loopback_server
    res = Sandbox(worktree, mode="require", network=True).run(CONNECT.format(port=port), timeout=20)
    assert res.exit_code == 0 and "hello-from-host" in res.output
    assert accepted == [1]


# ---------------------------------------------------------------- processes

@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_fork_bomb_is_contained(worktree, kind):
    if kind == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed or cannot run here")
    if kind == "none" and limits.PidsCgroup.create(8) is None and limits.nproc_limit_for(8) is None:
        pytest.skip("no pids cgroup and running as root (RLIMIT_NPROC is ignored): only the timeout bounds it")
    mark = token()
    sb = Sandbox(worktree, mode="require" if kind == "bwrap" else "none", max_pids=64)
    start = time.monotonic()
    res = sb.run(f"bomb_{mark}() {{ bomb_{mark} | bomb_{mark} & }}; bomb_{mark}; sleep 3; echo survived", timeout=4)
    assert time.monotonic() - start < 15
    assert res.exit_code is not None or res.timed_out
    assert_nothing_left(mark, wait_s=5)
    # The machine is still usable right after.
    assert sb.run("echo alive").output == "alive\n"


def test_pids_cgroup_limit_is_enforced(worktree):
    cg = limits.PidsCgroup.create(8)
    if cg is None:
        pytest.skip("no writable pids cgroup here (needs root or a delegated cgroup v2 subtree)")
    cg.close()
    mark = token()
    forker = ("import os, time\n"
              "n = 0\n"
              "for i in range(20):\n"
              "    try:\n"
              "        pid = os.fork()\n"
              "    except OSError:\n"
              "        break\n"
              "    if pid == 0:\n"
              "        time.sleep(30)\n"
              "        os._exit(0)\n"
              "    n += 1\n"
              f"print('started', n)  # {mark}\n")
    res = Sandbox(worktree, mode="none", max_pids=8).run(f"python -c \"{forker}\"", timeout=20)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("started ")
    assert 0 < int(res.output.split()[1]) <= 7  # pids.max counts python itself
    assert_nothing_left(mark)


def test_setsid_escape_is_killed_with_cgroup(worktree):
    """A process that leaves the process group (setsid) is still killed: via the cgroup, or bwrap's pid namespace."""
    cg = limits.PidsCgroup.create(8)
    if cg is None and not bwrap_available():
        pytest.skip("neither a pids cgroup nor bubblewrap: a setsid() child can outlive the command here")
    if cg is not None:
        cg.close()
    mark = token()
    mode = "none" if cg is not None else "require"
    res = Sandbox(worktree, mode=mode).run(f"setsid bash -c '(exec -a d-{mark} sleep 1000)' & sleep 0.3; echo ok",
                                           timeout=20)
    assert res.output == "ok\n"
    assert_nothing_left(mark)
