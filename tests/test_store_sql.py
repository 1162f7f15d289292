"""The store's own methods where they carry logic: transaction(), forgetting, interrupted runs (real SQLite)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from learnagent.store.episodes import Store
from learnagent.store.privacy_rows import EPISODE_ROWS, forgotten_hash
from learnagent.store.records import Episode


def _episode(store, repo, task="a task", **kw) -> tuple[str, str]:
    rid = store.ensure_repo(repo)
    return rid, store.create_episode(rid, task, **kw)


# ---- transaction() ---------------------------------------------------------------------------------

def test_transaction_commits_and_rolls_back_everything_inside(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    with store.transaction():
        store.set_recording(rid, False)
        store.record_forgotten(rid, "x")
    assert not store.recording_enabled(rid) and store.is_forgotten(rid, "x")
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.set_recording(rid, True)
            store.delete_episodes([eid])
            raise KeyboardInterrupt  # Ctrl-C half-way: nothing of it stays
    assert not store.recording_enabled(rid) and store.find_episode(eid) is not None
    assert not store.conn.in_transaction


def test_a_nested_transaction_joins_the_outer_one(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    with pytest.raises(RuntimeError):
        with store.transaction():
            with store.transaction():
                store.set_recording(rid, False)
            assert store.conn.in_transaction  # the inner one did not commit
            raise RuntimeError("after the inner block")
    assert store.recording_enabled(rid)


def test_transaction_holds_the_write_lock_against_another_process(git_repo):
    store = Store()
    rid, _ = _episode(store, git_repo)
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
    with store.transaction():
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


# ---- forgetting ------------------------------------------------------------------------------------

def test_episode_rows_name_every_table_that_points_at_an_episode():
    store = Store()
    pointing = set()
    for (table,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for fk in store.conn.execute(f"PRAGMA foreign_key_list('{table}')").fetchall():
            if fk["table"] == "episodes":
                pointing.add((table, fk["from"]))
    assert pointing and pointing <= set(EPISODE_ROWS)
    assert ("adapter_episodes", "episode_id") in EPISODE_ROWS


def test_record_forgotten_keeps_hashes_only_and_may_repeat(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    store.record_forgotten(rid, eid, "c0ffee")
    store.record_forgotten(rid, eid, "c0ffee")  # forgetting again is not an error
    rows = [tuple(r) for r in store.conn.execute("SELECT id_hash, repo_id, commit_hash FROM forgotten_episodes")]
    assert rows == [(forgotten_hash(rid, eid), rid, forgotten_hash(rid, "c0ffee"))]
    assert store.is_forgotten(rid, eid) and store.is_forgotten_commit(rid, "c0ffee")
    assert not store.is_forgotten("another-repo", eid)


def test_episode_ids_and_episodes_by_id(git_repo, tmp_path):
    store = Store()
    other = tmp_path / "other"
    other.mkdir()
    rid, old = _episode(store, git_repo, "old", started_at=time.time() - 100)
    _, new = _episode(store, git_repo, "new")
    _, elsewhere = _episode(store, other, "elsewhere")
    assert store.episode_ids(repo_id=rid) == [old, new]
    assert store.episode_ids(repo_id=rid, since=time.time() - 50) == [new]
    assert set(store.episode_ids()) == {old, new, elsewhere}
    got = store.episodes_by_id([new, old, new, "nope"])
    assert [e.id for e in got] == [old, new] and all(isinstance(e, Episode) for e in got)
    assert got[0].repo_path == str(git_repo.resolve()) and got[0].task == "old"


# ---- episodes ---------------------------------------------------------------------------------------

def test_mark_interrupted_only_from_the_given_statuses_and_keeps_the_first_error(git_repo):
    store = Store()
    _, eid = _episode(store, git_repo)
    assert store.find_episode(eid).status == "running"
    assert store.mark_interrupted(eid, "killed", statuses=("running",))
    ep = store.find_episode(eid)
    assert (ep.status, ep.error) == ("interrupted", "killed") and ep.ended_at is not None
    assert not store.mark_interrupted(eid, "again", statuses=("running",))
    _, failed = _episode(store, git_repo)
    store.finish_episode(failed, "failed", error="boom")
    assert not store.mark_interrupted(failed, "gc", statuses=("running", "finished"))
    assert store.mark_interrupted(failed, "gc", statuses=("failed",))
    assert store.find_episode(failed).error == "boom"
    assert store.find_episode("nope") is None
    assert store.running_episode_ids(store.ensure_repo(git_repo)) == []
