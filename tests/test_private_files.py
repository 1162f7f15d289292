"""What learnagent keeps on disk stays private (issue 10): the data home 0700, the store's files and
the adapters 0600, also when an older version left them readable; and the sandbox's private tmp
folders that a killed run left behind are found and removed by `gc`, never anything else."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import run_cli
from learnagent.core import home
from learnagent.core.repository import Repository
from learnagent.sandbox import tmpdirs
from learnagent.services import gc as gcmod
from learnagent.store.episodes import Store
from repo_helpers import folder_repository


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def store_files() -> list[Path]:
    return sorted(home.data_home().glob("learnagent.db*"))


# ---- data home and store files ---------------------------------------------------------------------------

def test_a_new_store_is_private_from_the_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEARNAGENT_HOME", str(tmp_path / "fresh" / "learnagent"))
    old_umask = os.umask(0o022)  # a typical desktop umask: new files 0644, folders 0755
    try:
        with Store() as store:
            store.create_episode(store.ensure_repo(folder_repository(tmp_path)), "task")
            names = [p.name for p in store_files()]
            assert names == ["learnagent.db", "learnagent.db-shm", "learnagent.db-wal"]  # WAL files exist now
            assert {p.name: mode(p) for p in store_files()} == dict.fromkeys(names, 0o600)
    finally:
        os.umask(old_umask)
    assert mode(home.data_home()) == 0o700
    assert capsys.readouterr().err == ""  # nothing was loose: nothing to say


def test_an_older_readable_store_is_tightened_and_said_once(tmp_path, monkeypatch, capsys):
    data = tmp_path / "old-home"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    monkeypatch.setenv("LEARNAGENT_HOME", str(data))
    # as an older learnagent left it: 0644 files in a 0755 home; kept open, so the -wal and -shm files stay
    db = sqlite3.connect(data / "learnagent.db")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (x)")
    for path in (data / "learnagent.db", data / "learnagent.db-wal", data / "learnagent.db-shm"):
        os.chmod(path, 0o644)
    with Store():
        pass
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("learnagent: made private")
    assert f"{data} 0755 -> 0700" in err and "learnagent.db 0644 -> 0600" in err and "learnagent.db-wal 0644" in err
    assert mode(data) == 0o700
    assert all(mode(p) == 0o600 for p in store_files())
    with Store():
        pass
    assert capsys.readouterr().err == ""  # said once
    db.close()


def test_a_shared_folder_is_not_changed_but_warned_about(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    monkeypatch.setenv("LEARNAGENT_HOME", str(shared))
    with Store():
        pass
    err = capsys.readouterr().err
    assert "warning: readable by other local users, not changed" in err and "(looks shared)" in err
    assert mode(shared) == 0o1777


def test_the_cli_says_it_once(git_repo, tmp_path):
    data = tmp_path / "cli-home"
    data.mkdir()
    os.chmod(data, 0o755)
    env = {"LEARNAGENT_HOME": str(data)}
    first = run_cli("log", cwd=git_repo, env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli("log", cwd=git_repo, env=env)
    assert "made private" in first.stderr and "made private" not in second.stderr
    assert mode(data) == 0o700


def test_adapter_files_are_private(git_repo):
    from learnagent.learning.registry import Registry

    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        version = reg.reserve(parent=None, method="opsd", base_model="tiny")
        folder = reg.folder(version)
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"r": 4}')
        (folder / "adapter_model.safetensors").write_bytes(b"weights distilled from the user's episodes")
        os.chmod(folder / "adapter_model.safetensors", 0o644)
        reg.finish(version, metrics={"gap": 0.1}, episode_ids=[], config={})
    assert mode(folder) == 0o700
    assert {p.name: mode(p) for p in folder.iterdir()} == {p.name: 0o600 for p in folder.iterdir()}


# ---- orphaned sandbox tmp folders --------------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_orphans_are_told_by_their_owner(private_system_tmp):
    me = os.getpid()
    dead = dead_pid()
    live = private_system_tmp / f"{tmpdirs.PREFIX}{me}.{tmpdirs.process_start(me)}-livelive"
    orphan = private_system_tmp / f"{tmpdirs.PREFIX}{dead}.12345-deaddead"
    reused = private_system_tmp / f"{tmpdirs.PREFIX}{me}.{tmpdirs.process_start(me) + 1}-reused00"  # pid reused
    legacy_old = private_system_tmp / f"{tmpdirs.PREFIX}abcd1234"
    legacy_young = private_system_tmp / f"{tmpdirs.PREFIX}efgh5678"
    for folder in (live, orphan, reused, legacy_old, legacy_young):
        folder.mkdir()
    old = time.time() - tmpdirs.LEGACY_AGE_S - 60
    os.utime(legacy_old, (old, old))
    target = private_system_tmp / "not-ours"
    target.mkdir()
    (private_system_tmp / f"{tmpdirs.PREFIX}{dead}.1-symlink0").symlink_to(target)  # never followed
    (private_system_tmp / f"{tmpdirs.PREFIX}{dead}.1-afile000").write_text("x")  # not a folder
    (private_system_tmp / "unrelated-folder").mkdir()

    found = {path.name: reason for path, reason in tmpdirs.orphans()}
    assert found == {orphan.name: f"its process {dead} is gone",
                     reused.name: f"its process {me} is gone (the pid now belongs to another process)",
                     legacy_old.name: "left by an older learnagent, untouched for 24 h"}


def test_gc_removes_the_tmp_of_a_killed_sandbox_and_nothing_else(git_repo, private_system_tmp):
    code = ("import sys, time; from learnagent.sandbox import Sandbox; s = Sandbox(sys.argv[1], mode='none'); "
            "(s.private_tmp / 'left.txt').write_text('x'); (s.private_tmp / 'locked').mkdir(); "
            "(s.private_tmp / 'locked' / 'f').write_text('y'); (s.private_tmp / 'locked').chmod(0); "
            "print(s.private_tmp, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(git_repo)], stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())
    assert folder.parent == private_system_tmp and folder.name.startswith(f"{tmpdirs.PREFIX}{proc.pid}.")
    with Store() as store:
        assert [i.what for i in gcmod.collect(store, Repository.at(git_repo), dry_run=True)] == []  # alive: not an orphan
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert folder.exists()  # SIGKILL skipped the Sandbox's cleanup
        planned = gcmod.collect(store, Repository.at(git_repo), dry_run=True)
        assert [(i.what, i.target, i.reason) for i in planned] == [
            ("sandbox tmp", str(folder), f"its process {proc.pid} is gone")]
        assert folder.exists()
        done = gcmod.collect(store, Repository.at(git_repo))
    assert [i.done for i in done] == [True]
    assert not folder.exists()


def test_a_closed_sandbox_leaves_nothing_even_with_a_locked_folder(git_repo, private_system_tmp):
    from learnagent.sandbox import Sandbox

    sb = Sandbox(git_repo, mode="none")
    sb.run("mkdir -p /tmp/x/locked && touch /tmp/x/locked/f && chmod 000 /tmp/x/locked".replace("/tmp",
                                                                                                 str(sb.private_tmp)))
    outside = private_system_tmp / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (sb.private_tmp / "link").symlink_to(outside)
    sb.close()
    assert list(private_system_tmp.glob(f"{tmpdirs.PREFIX}*")) == []
    assert (outside / "keep.txt").read_text() == "keep"  # a symlink inside is removed, never followed


@pytest.mark.parametrize("dry", [True, False])
def test_gc_cli_lists_and_removes_orphans(git_repo, private_system_tmp, dry):
    dead = dead_pid()
    orphan = private_system_tmp / f"{tmpdirs.PREFIX}{dead}.7-cli00000"
    orphan.mkdir()
    out = run_cli("gc", *(["--dry-run"] if dry else []), cwd=git_repo,
                  env={"TMPDIR": str(private_system_tmp)})
    assert out.returncode == 0, out.stderr
    assert ("would remove" if dry else "removed") in out.stdout and "sandbox tmp" in out.stdout
    assert orphan.exists() == dry
