"""The store's own methods where they carry logic: transaction(), forgetting, interrupted runs (real SQLite
and a real PostgreSQL server: every test runs on both, see `store_db` in conftest.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from learnagent.core.repository import Repository
from learnagent.store.episodes import Store
from learnagent.store.privacy_rows import EPISODE_ROWS, forgotten_hash
from learnagent.store.records import Episode

pytestmark = pytest.mark.usefixtures("store_db")


def _episode(store, repo, task="a task", **kw) -> tuple[str, str]:
    rid = store.ensure_repo(Repository.at(repo))
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


def test_transaction_holds_the_write_lock_against_another_process(git_repo, store_db):
    if store_db != "sqlite":
        pytest.skip("SQLite's file lock; PostgreSQL's advisory lock: tests/test_store_backends.py")
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

def test_episode_rows_name_every_table_that_points_at_an_episode(store_db):
    if store_db != "sqlite":
        pytest.skip("reads SQLite's catalogue; the schema is the same revision on both")
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
    subprocess.run(["git", "init", "-q", str(other)], check=True)  # a second repository
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
    assert store.running_episode_ids(store.ensure_repo(Repository.at(git_repo))) == []


# ---- adapter rows -----------------------------------------------------------------------------------

def test_adapter_rows_count_episodes_order_and_filter(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    for v, parent in (("v0001", None), ("v0002", "v0001")):
        store.add_adapter(rid, v, path=f"/a/{v}", parent=parent, method="opsd", base_model="tiny")
    store.add_adapter_episodes(rid, "v0001", [eid, "e2"])
    store.add_adapter_episodes(rid, "v0001", [eid])  # again: a no-op
    store.set_adapter_metrics(rid, "v0002", {"gap": 0.25})
    store.set_adapter_status(rid, "v0001", "promoted", "passed the gate")
    v1, v2 = store.adapter(rid, "v0001"), store.adapter(rid, "v0002")
    assert (v1.episodes, v1.status, v1.reason, v1.parent, v1.tainted) == (2, "promoted", "passed the gate", None, False)
    assert (v2.episodes, v2.status, v2.metrics, v2.parent) == (0, "candidate", {"gap": 0.25}, "v0001")
    assert [a.version for a in store.adapters(rid)] == ["v0002", "v0001"]
    assert [a.version for a in store.adapters(rid, newest_first=False)] == ["v0001", "v0002"]
    assert [a.version for a in store.adapters(rid, status="candidate")] == ["v0002"]
    assert store.adapter(rid, "v0009") is None and store.adapters("other") == []
    assert store.adapter_episode_ids(rid, "v0001") == sorted([eid, "e2"])


def test_retire_promoted_keeps_one_and_optionally_its_old_reason(git_repo):
    store = Store()
    rid = store.ensure_repo(Repository.at(git_repo))
    for v in ("v0001", "v0002", "v0003"):
        store.add_adapter(rid, v, path=v, parent=None, method="opsd", base_model="tiny")
    store.set_adapter_status(rid, "v0001", "promoted", "old reason")
    store.set_adapter_status(rid, "v0002", "promoted", None)
    store.set_adapter_status(rid, "v0003", "promoted", "chosen")
    store.retire_promoted(rid, keep="v0003", reason="superseded", keep_reason=True)
    got = {a.version: (a.status, a.reason) for a in store.adapters(rid)}
    assert got == {"v0001": ("retired", "old reason"), "v0002": ("retired", "superseded"), "v0003": ("promoted", "chosen")}
    store.retire_promoted(rid, keep=None, reason="rolled back")
    assert store.adapter(rid, "v0003").status == "retired" and store.adapter(rid, "v0003").reason == "rolled back"
    store.restore_promoted(rid, "v0003")
    assert (store.adapter(rid, "v0003").status, store.adapter(rid, "v0003").reason) == ("promoted", "rolled back")


def test_adapters_trained_on_reads_any_number_of_ids(git_repo):
    store = Store()
    rid = store.ensure_repo(Repository.at(git_repo))
    for v in ("v0001", "v0002"):
        store.add_adapter(rid, v, path=v, parent=None, method="opsd", base_model="tiny")
    store.add_adapter_episodes(rid, "v0001", [f"e{i}" for i in range(1200)])
    store.add_adapter_episodes(rid, "v0002", ["x"])
    assert store.adapters_trained_on(rid, [f"e{i}" for i in range(1100, 1300)]) == {"v0001"}
    assert store.adapters_trained_on(rid, ["nope", "x"]) == {"v0002"}
    store.mark_adapters_tainted(rid, {"v0002"})
    assert store.tainted_adapter_versions(rid) == ["v0002"] and store.adapter(rid, "v0002").tainted is True


# ---- outcome rows -----------------------------------------------------------------------------------

def test_outcome_events_one_match_per_commit_and_rewrites_keep_their_detail(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    assert store.add_outcome_event(eid, "match", commit="aaa", matched=2, total=4, detail={"exact": [0, 1]})
    assert not store.add_outcome_event(eid, "match", commit="aaa", matched=3, total=4)  # one match per commit
    assert store.add_outcome_event(eid, "verdict", outcome="accepted", detail={"by": "user"})
    assert store.add_outcome_event(eid, "verdict", outcome="accepted")  # other kinds may repeat
    assert [e.kind for e in store.outcome_events(eid)] == ["match", "verdict", "verdict"]
    assert store.rewrite_matches("aaa", "bbb") == {eid}
    assert store.rewrite_matches("aaa", "ccc") == set()  # already rewritten
    (rewritten,) = store.outcome_events(eid, "rewritten")
    assert rewritten.detail == {"exact": [0, 1], "rewritten_to": "bbb"} and rewritten.commit_sha == "aaa"
    assert store.outcome_events(eid, "match") == []


def test_survival_rows_provisional_ones_are_replaced_final_ones_stay(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo)
    _, other = _episode(store, git_repo)
    for e in (eid, other):
        store.set_outcome(e, "accepted")
        store.add_outcome_event(e, "match", commit=f"c-{e}")
    store.add_outcome_event(eid, "survival", detail={"final": False, "rate": 0.5})
    store.add_outcome_event(eid, "survival", detail={"final": True, "rate": 0.75})
    store.add_outcome_event(eid, "survival", detail={"final": False, "rate": 1.0})
    store.drop_provisional_survival(eid)
    assert [e.detail["rate"] for e in store.outcome_events(eid, "survival")] == [0.75]
    assert [e.id for e in store.episodes_to_measure_survival(rid)] == [other]  # eid has a final result
    assert store.episodes_to_measure_survival(rid, limit=0) == []
    store.add_outcome_event(other, "survival", detail={"final": False, "rate": 0.25})
    rated = {r.id: r for r in store.rated_episodes(rid)}
    assert rated[eid].survival == 0.75 and rated[other].survival == 0.25


def test_rated_episodes_take_the_final_test_run_and_leave_history_out(git_repo):
    store = Store()
    rid, eid = _episode(store, git_repo, model="m", adapter_version="v0001")
    store.add_test_run(eid, "final", "pytest", 1, "failed", 0.1)
    store.add_test_run(eid, "agent", "pytest", 0, "passed", 0.1)  # recorded later, but not the final run
    _, untested = _episode(store, git_repo)
    _, timed_out = _episode(store, git_repo)
    store.add_test_run(timed_out, "agent", "pytest", 0, "", 9.0, timed_out=True)
    _episode(store, git_repo, source="history")
    rated = store.rated_episodes(rid)
    assert [r.id for r in rated] == [eid, untested, timed_out]
    assert [r.passed for r in rated] == [False, None, False]
    assert (rated[0].model, rated[0].adapter_version, rated[0].outcome) == ("m", "v0001", "pending")
    assert store.count_episodes(rid) == 4 and store.count_episodes(rid, source="history") == 1


def test_model_calls_add_up_and_steps_only_grow(git_repo):
    store = Store()
    _, eid = _episode(store, git_repo)
    store.add_model_call(eid, 3, 2, None, 10, 5, 0.1, 0.01)
    store.add_model_call(eid, 1, 2, None, 7, 1, 0.1, 0.02)  # an earlier step reported late
    ep = store.find_episode(eid)
    assert (ep.steps, ep.prompt_tokens, ep.completion_tokens) == (3, 17, 6)
    assert abs(ep.cost_usd - 0.03) < 1e-9


def test_short_ids_are_unique_prefixes_that_resolve_back(git_repo):
    store = Store()
    rid = store.ensure_repo(Repository.at(git_repo))
    ids = ["260101000000aaaaaa", "260101000000aaaabb", "260101000000abcdef", "2601010000009f0000"]
    for eid in ids:
        store.create_episode(rid, "t", episode_id=eid)
    short = store.short_ids(ids)
    assert short == {"260101000000aaaaaa": "260101000000aaaaa", "260101000000aaaabb": "260101000000aaaab",
                     "260101000000abcdef": "260101000000ab", "2601010000009f0000": "2601010000009"}
    assert all(store.resolve_id(p) == eid for eid, p in short.items())
    assert store.short_ids(["260101000000abcdef"], min_len=16)["260101000000abcdef"] == "260101000000abcd"
    assert store.ensure_repo(Repository.at(git_repo)) == rid  # a second time: the same row, no error


def test_get_episode_returns_typed_records_and_list_gives_the_last_test_verdict(git_repo):
    from learnagent.store.records import Message, ModelCall, TestRun, ToolCall, as_json

    store = Store()
    rid, eid = _episode(store, git_repo, meta={"k": 1})
    seq = store.add_message(eid, 0, "user", "hello")
    store.add_model_call(eid, 0, 1, seq, 3, 2, 0.5, engine="scripted", stop_reason="action")
    store.add_tool_call(eid, 0, "read", {"path": "a.py"}, "text", False, 0.01)
    store.add_test_run(eid, "agent", "pytest", 1, "F", 0.2)
    store.add_test_run(eid, "final", "pytest", None, "", 9.0, timed_out=True)
    ep = store.get_episode(eid)
    assert ep.messages == (Message(seq, 0, "user", "hello", None, ep.messages[0].created_at),)
    assert ep.model_calls == (ModelCall(0, 1, seq, 3, 2, 0.5, 0.0, "scripted", None, "action"),)
    assert ep.tool_calls == (ToolCall(0, "read", {"path": "a.py"}, "text", False, 0.01),)
    assert [(t.phase, t.verdict, t.passed) for t in ep.test_runs] == [("agent", "fail", False),
                                                                        ("final", "timeout", False)]
    assert isinstance(ep.test_runs[1], TestRun) and ep.test_runs[1].timed_out is True
    assert ep.tests == "timeout" and ep.meta == {"k": 1} and ep.repo_path == str(git_repo.resolve())
    (listed,) = store.list_episodes(rid)
    assert listed.tests == "timeout" and listed.messages == () and listed.id == eid
    data = as_json(ep)  # the JSON edge: plain dicts all the way down
    assert data["tool_calls"][0] == {"step": 0, "name": "read", "args": {"path": "a.py"}, "result": "text",
                                     "ok": False, "duration_s": 0.01}
    assert data["meta"] == {"k": 1} and data["test_runs"][1]["timed_out"] is True


def test_a_migration_another_process_applied_meanwhile_is_not_run_again(tmp_path, store_db):
    """The open's quick look at the schema version may predate another process's migration: the
    upgrade reads the version again inside the write lock, so it runs nothing twice (a CREATE TABLE
    run twice would raise)."""
    import os

    from learnagent.store import db, pg

    target = os.environ["LEARNAGENT_DB"] if store_db == "postgresql" else str(tmp_path / "a.db")
    conn = db.connect(target)  # migrated to the newest revision
    stale = pg.sqlalchemy_url(target) if store_db == "postgresql" else f"sqlite:///{target}"
    db._alembic_upgrade(stale, target)  # what a process whose first look said "old" then does
    assert [tuple(r) for r in conn.execute("SELECT version_num FROM alembic_version")] == \
        [(f"{db.head_version():04d}",)]
    if store_db == "sqlite":
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.head_version()
    assert not conn.in_transaction
    conn.close()


def test_no_sql_outside_the_store():
    """Every SQL statement lives in store/ (docs/STORE.md "Who writes SQL"): nothing else executes
    statements, touches a store's connection, or opens SQLite. The repo map's tag cache is its own
    file with no episode data (agent/repomap_tags.py), the one exception. (Catching sqlite3's
    exception types, as cli/app.py and agent/repomap.py do, is not SQL.)"""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = {Path("agent/repomap_tags.py")}
    found = []
    for folder in ("agent", "cli", "core", "learning", "runtime", "sandbox", "services"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            if rel in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript",
                                                                     "conn"):
                    found.append(f"{rel}:{node.lineno} .{node.attr}")
                elif isinstance(node, ast.Attribute) and node.attr == "connect" and \
                        isinstance(node.value, ast.Name) and node.value.id == "sqlite3":
                    found.append(f"{rel}:{node.lineno} opens SQLite")
    assert found == []
