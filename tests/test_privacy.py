"""Privacy controls: forget, recording on/off, gc, adapter file checks (store.privacy, services.forget, services.gc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.core.dates import parse_since
from learnagent.core.errors import LearnagentError, UsageError
from learnagent.core.repository import Repository
from learnagent.services import gc as gcmod
from learnagent.services.forget import forget
from learnagent.store import privacy
from learnagent.store.episodes import Store

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL


def _episode(store, repo, task="a task", **kw):
    rid = store.ensure_repo(Repository.at(repo))
    eid = store.create_episode(rid, task, **kw)
    store.add_message(eid, 0, "user", f"{task} -- message body")
    store.add_tool_call(eid, 0, "run", {"cmd": "ls"}, f"{task} -- tool output", True, 0.1)
    store.add_test_run(eid, "final", "pytest", 0, f"{task} -- test output", 0.5)
    return rid, eid


def _count(store, table, eid):
    return store.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE episode_id = ?", (eid,)).fetchone()[0]


# ---- forget ------------------------------------------------------------------------------------

def test_forget_deletes_everything_and_scrubs_the_file(git_repo, store_db):
    store = Store()
    rid, gone = _episode(store, git_repo, "UNIQUEMARKER-zq81 fix the parser")
    _, kept = _episode(store, git_repo, "keep this one")
    chosen = privacy.select_episodes(store, repo_id=None, ids=[gone])
    assert [e.id for e in chosen] == [gone]
    result = forget(store, chosen)
    assert result.episodes == [gone]
    for table in ("messages", "tool_calls", "test_runs"):
        assert _count(store, table, gone) == 0 and _count(store, table, kept) == 1
    assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 1
    assert store.is_forgotten(rid, gone) and not store.is_forgotten(rid, kept)
    # the id is stored only as a hash
    assert gone not in json.dumps([dict(r) for r in store.conn.execute("SELECT * FROM forgotten_episodes")])
    store.close()
    if store_db != "sqlite":
        return  # the server's files are the operator's (docs/TEAM.md "Forgetting on a team store")
    # secure_delete + WAL checkpoint: the text is not left in the database files on disk
    raw = b"".join(p.read_bytes() for p in home.db_path().parent.glob("learnagent.db*"))
    assert b"UNIQUEMARKER-zq81" not in raw
    assert b"keep this one" in raw


def test_forget_taints_adapters_trained_on_the_episode(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    _, other = _episode(store, git_repo, "other")
    for version, episodes in (("v0001", [eid, other]), ("v0002", [other])):
        store.conn.execute("INSERT INTO adapters(repo_id, version, path, method, base_model, created_at)"
                           " VALUES (?,?,?,?,?,?)", (rid, version, f"/x/{version}", "opsd", "tiny", time.time()))
        for e in episodes:
            store.conn.execute("INSERT INTO adapter_episodes VALUES (?,?,?)", (rid, version, e))
    result = forget(store, privacy.select_episodes(store, repo_id=None, ids=[eid]))
    assert result.tainted_adapters == [(rid, "v0001")]
    assert store.tainted_adapter_versions(rid) == ["v0001"]
    left = store.conn.execute("SELECT version, episode_id FROM adapter_episodes ORDER BY version").fetchall()
    assert [tuple(r) for r in left] == [("v0001", other), ("v0002", other)]


def test_forget_moves_the_promoted_pointer_off_a_tainted_adapter(git_repo):
    """`do` must stop loading an adapter trained on a forgotten episode at once, not after the next sleep."""
    from learnagent.learning.registry import LINEAGE, POINTER, Registry, promoted_adapter, write_json_atomic

    store = Store()
    rid, eid = _episode(store, git_repo)
    _, other = _episode(store, git_repo, "other")
    reg = Registry(store, Repository.at(git_repo))
    for version, parent, episodes in (("v0001", None, [other]), ("v0002", "v0001", [eid])):
        folder = reg.folder(version)
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / LINEAGE).write_text("{}")
        store.conn.execute("INSERT INTO adapters(repo_id, version, path, parent, method, base_model, created_at)"
                           " VALUES (?,?,?,?,?,?,?)", (rid, version, str(folder), parent, "opsd", "tiny", time.time()))
        for e in episodes:
            store.conn.execute("INSERT INTO adapter_episodes VALUES (?,?,?)", (rid, version, e))
    write_json_atomic(reg.root / POINTER, {"version": "v0002", "history": ["v0001"], "promoted_at": 0})
    assert promoted_adapter(Repository.at(git_repo))[0] == "v0002"
    result = forget(store, privacy.select_episodes(store, repo_id=None, ids=[eid]))
    assert result.tainted_adapters == [(rid, "v0002")]
    assert promoted_adapter(Repository.at(git_repo))[0] == "v0001"


def test_forget_history_episode_blocks_reimport_of_its_commit(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo, "imported", source="history")
    sha = git(git_repo, "rev-parse", "HEAD").strip()
    store.conn.execute("INSERT INTO imported_commits(repo_id, sha, episode_id) VALUES (?,?,?)", (rid, sha, eid))
    forget(store, privacy.select_episodes(store, repo_id=rid, ids=[eid]))
    assert store.is_forgotten_commit(rid, sha)
    assert not store.is_forgotten_commit(rid, "0" * 40)
    assert store.conn.execute("SELECT COUNT(*) FROM imported_commits").fetchone()[0] == 0


def test_select_since_and_all_are_per_repository(git_repo, tmp_path):
    other_repo = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other_repo)], check=True)  # a second repository
    store = Store()
    rid, old = _episode(store, git_repo, "old", started_at=time.time() - 10 * 86400)
    _, new = _episode(store, git_repo, "new")
    _, elsewhere = _episode(store, other_repo, "elsewhere")
    since = parse_since(time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400)))
    assert [e.id for e in privacy.select_episodes(store, repo_id=rid, since=since)] == [new]
    assert {e.id for e in privacy.select_episodes(store, repo_id=rid, everything=True)} == {old, new}
    assert parse_since("2 days ago") < since < parse_since("now")  # git's dates, as `history import --since`
    with pytest.raises(UsageError, match="not a date"):
        parse_since("the other day")
    with pytest.raises(LearnagentError, match="no episode"):
        privacy.select_episodes(store, repo_id=rid, ids=["zzzz"])


def test_forget_cli_asks_and_removes_git_traces(git_repo, tmp_path):
    from learnagent.agent import worktree as wt

    store = Store()
    head = git(git_repo, "rev-parse", "HEAD").strip()
    rid = store.ensure_repo(Repository.at(git_repo))
    eid = "250101000000abcdef"
    path, branch = wt.create_worktree(Repository.at(git_repo), eid, head)
    store.create_episode(rid, "secret-ish task", branch=branch, worktree=str(path), episode_id=eid)
    store.close()
    out = run_cli("forget", eid[:12], cwd=git_repo)  # no terminal and no --yes: refuses
    assert out.returncode != 0 and "--yes" in out.stderr
    out = run_cli("forget", "--all", "--yes", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert "Forgot 1 episode" in out.stdout
    assert not path.exists() and branch not in git(git_repo, "branch", "--list")
    out = run_cli("forget", cwd=git_repo)
    assert out.returncode == 2 and "--since" in out.stderr


# ---- recording on/off --------------------------------------------------------------------------

def test_logs_off_on_status_and_do_records_nothing(git_repo, tmp_path):
    assert "recording is on" in run_cli("logs", "status", cwd=git_repo).stdout
    out = run_cli("logs", "off", cwd=git_repo)
    assert out.returncode == 0 and "recording is off" in out.stdout
    with Store() as store:
        assert store.recording_enabled(Repository.at(git_repo).key) is False
    script = write_script(tmp_path / "s.json", ["<run>echo hello</run>", "<finish>done</finish>"])
    out = run_cli("do", "say hello", "--model", f"scripted:{script}", "--no-apply", "--sandbox", "none",
                  cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert "not stored" in out.stdout + out.stderr
    with Store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 0
        assert store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    with Store() as store:
        store.set_recording(Repository.at(git_repo).key, True)
        assert store.recording_enabled(Repository.at(git_repo).key) is True


# ---- gc ----------------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_gc_removes_dead_and_decided_keeps_live_pending_and_kept(git_repo):
    from learnagent.agent import worktree as wt

    store = Store()
    rid = store.ensure_repo(Repository.at(git_repo))
    head = git(git_repo, "rev-parse", "HEAD").strip()
    cases = {  # id: (status, outcome, pid)
        "250101000001aaaaaa": ("running", "pending", _dead_pid()),   # crashed run -> interrupted, removed
        "250101000002bbbbbb": ("running", "pending", os.getpid()),   # live run -> untouched
        "250101000003cccccc": ("finished", "rejected", None),        # decided -> removed
        "250101000004dddddd": ("finished", "kept", None),            # kept -> never
        "250101000005eeeeee": ("finished", "pending", os.getpid()),  # its do still asks -> untouched
        "250101000006ffffff": ("finished", "pending", _dead_pid()),  # its do died before the verdict
    }
    paths = {}
    for eid, (status, outcome, pid) in cases.items():
        path, branch = wt.create_worktree(Repository.at(git_repo), eid, head)
        paths[eid] = path
        store.create_episode(rid, "t", branch=branch, worktree=str(path), episode_id=eid,
                             meta={"pid": pid, "host": __import__("socket").gethostname()} if pid else {})
        if status != "running":
            store.finish_episode(eid, status)
        store.conn.execute("UPDATE episodes SET outcome = ? WHERE id = ?", (outcome, eid))
    planned = gcmod.collect(store, Repository.at(git_repo), dry_run=True)
    assert {(i.episode_id[-6:], i.what) for i in planned} == {
        ("aaaaaa", "episode"), ("aaaaaa", "worktree"), ("aaaaaa", "branch"),
        ("cccccc", "worktree"), ("cccccc", "branch"),
        ("ffffff", "episode"), ("ffffff", "worktree"), ("ffffff", "branch")}
    assert all(p.exists() for p in paths.values())  # dry run changed nothing
    done = gcmod.collect(store, Repository.at(git_repo))
    assert all(i.done for i in done)
    branches = git(git_repo, "branch", "--list")
    for eid, path in paths.items():
        gone = eid.endswith(("aaaaaa", "cccccc", "ffffff"))
        assert path.exists() != gone
        assert (f"learnagent/{eid}" in branches) != gone
    status = dict(store.conn.execute("SELECT id, status FROM episodes").fetchall())
    assert status["250101000001aaaaaa"] == "interrupted" and status["250101000002bbbbbb"] == "running"
    assert status["250101000006ffffff"] == "interrupted" and status["250101000005eeeeee"] == "finished"
    assert gcmod.collect(store, Repository.at(git_repo)) == []  # nothing left to do
    # episode folders are standalone checkouts: git knows no linked worktree of them
    assert git(git_repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_gc_unknown_worktrees_wait_for_a_grace_period(git_repo):
    from learnagent.agent import worktree as wt

    store = Store()
    head = git(git_repo, "rev-parse", "HEAD").strip()
    path, branch = wt.create_worktree(Repository.at(git_repo), "250101000009ffffff", head)
    assert gcmod.collect(store, Repository.at(git_repo)) == []  # young: maybe a `do` that is just starting
    items = gcmod.collect(store, Repository.at(git_repo), now=time.time() + gcmod.UNKNOWN_GRACE_S + 5)
    assert [(i.what, i.reason) for i in items] == [("worktree", "not in the store"),
                                                   ("branch", "not in the store, no commits")]
    assert not path.exists() and branch not in git(git_repo, "branch", "--list")
    # an unrecorded run (logs off) that committed work: its branch may be the user's, so it stays
    path, branch = wt.create_worktree(Repository.at(git_repo), "250101000010gggggg", head)
    (path / "new.txt").write_text("work\n")
    wt.commit_all(Repository.at(git_repo), path, base=head, branch=branch, message="agent work")
    items = gcmod.collect(store, Repository.at(git_repo), now=time.time() + gcmod.UNKNOWN_GRACE_S + 5)
    assert [i.what for i in items] == ["worktree"] and branch in git(git_repo, "branch", "--list")


def test_gc_cli_prints_a_table(git_repo):
    out = run_cli("gc", "--dry-run", cwd=git_repo)
    assert out.returncode == 0 and "Nothing to clean up" in out.stdout


# ---- adapter files -----------------------------------------------------------------------------

def _write_adapter(folder):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    save_file({"a": torch.zeros(64, 8), "b": torch.ones(8, 64)}, str(folder / "adapter_model.safetensors"))
    return folder / "adapter_model.safetensors"


def test_verify_adapter_accepts_good_and_names_the_way_out_for_bad(tmp_path):
    weights = _write_adapter(tmp_path / "v0001")
    privacy.verify_adapter(tmp_path / "v0001")
    privacy.verify_adapter(weights)
    data = weights.read_bytes()
    for cut in (4, 60, len(data) - 10):
        weights.write_bytes(data[:cut])
        with pytest.raises(privacy.AdapterCorrupt) as err:
            privacy.verify_adapter(tmp_path / "v0001")
        msg = str(err.value)
        assert "\n" not in msg and ("truncated" in msg or "garbled" in msg) and "learnagent sleep" in msg
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json!!!!!!}" + b"\0" * 32)
    with pytest.raises(privacy.AdapterCorrupt, match="garbled"):
        privacy.verify_adapter(weights)
    (tmp_path / "v0001" / "adapter_config.json").write_text('{"r": 4,')
    with pytest.raises(privacy.AdapterCorrupt, match="not valid JSON"):
        privacy.verify_adapter(tmp_path / "v0001")
    with pytest.raises(privacy.AdapterCorrupt, match="does not exist"):
        privacy.verify_adapter(tmp_path / "nope")
