"""Many processes writing one episode store at once (WAL): no lock errors, nothing lost or mixed up."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import traceback
from concurrent.futures import ThreadPoolExecutor

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home

N_PROCS = 6
EPISODES_EACH = 12
MESSAGES_EACH = 6


def _writer(proc: int, repo: str, start, errors) -> None:
    """One real process writing whole episodes; every text names its writer so mix-ups show."""
    try:
        from learnagent.store.episodes import Store

        start.wait()
        with Store() as store:
            rid = store.ensure_repo(repo)
            for i in range(EPISODES_EACH):
                tag = f"p{proc}-e{i}"
                eid = store.create_episode(rid, f"task {tag}", meta={"writer": proc})
                for j in range(MESSAGES_EACH):
                    seq = store.add_message(eid, j, "assistant" if j % 2 else "user", f"{tag}-m{j}")
                    store.add_model_call(eid, j, seq, seq, 10, 5, 0.01)
                    store.add_tool_call(eid, j, "run", {"cmd": f"echo {tag}"}, f"out {tag}-{j}", True, 0.01)
                store.update_meta(eid, done=True)
                store.add_test_run(eid, "final", "pytest", 0, f"tests {tag}", 0.1)
                store.finish_episode(eid, "finished", summary=f"sum {tag}")
    except BaseException:
        errors.put(f"writer {proc}: {traceback.format_exc()}")


def _reader(stop, errors) -> None:
    try:
        from learnagent.store.episodes import Store

        with Store() as store:
            while not stop.is_set():
                for ep in store.list_episodes(limit=20):
                    store.get_episode(ep["id"])
    except BaseException:
        errors.put(f"reader: {traceback.format_exc()}")


def test_parallel_processes_write_without_lock_errors_or_mixups(tmp_path):
    ctx = mp.get_context("spawn")  # real separate interpreters, not forked copies of this one
    start, stop, errors = ctx.Event(), ctx.Event(), ctx.Queue()
    repo = str(tmp_path)
    procs = [ctx.Process(target=_writer, args=(p, repo, start, errors)) for p in range(N_PROCS)]
    readers = [ctx.Process(target=_reader, args=(stop, errors)) for _ in range(2)]
    for p in procs + readers:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=180)
    stop.set()
    for p in readers:
        p.join(timeout=30)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [], "\n".join(found)
    assert all(p.exitcode == 0 for p in procs + readers)

    db = sqlite3.connect(home.db_path())
    db.row_factory = sqlite3.Row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    episodes = db.execute("SELECT * FROM episodes").fetchall()
    assert len(episodes) == N_PROCS * EPISODES_EACH
    assert len({e["id"] for e in episodes}) == len(episodes)
    for ep in episodes:
        tag = ep["task"].removeprefix("task ")
        assert ep["status"] == "finished" and ep["summary"] == f"sum {tag}"
        assert json.loads(ep["meta"]) == {"writer": int(tag[1:].split("-")[0]), "done": True}
        msgs = db.execute("SELECT seq, content FROM messages WHERE episode_id = ? ORDER BY seq", (ep["id"],)).fetchall()
        assert [(m["seq"], m["content"]) for m in msgs] == [(j, f"{tag}-m{j}") for j in range(MESSAGES_EACH)]
        tools = db.execute("SELECT result FROM tool_calls WHERE episode_id = ? ORDER BY id", (ep["id"],)).fetchall()
        assert [t["result"] for t in tools] == [f"out {tag}-{j}" for j in range(MESSAGES_EACH)]
        assert ep["steps"] == MESSAGES_EACH - 1 and ep["prompt_tokens"] == 10 * MESSAGES_EACH
        assert db.execute("SELECT COUNT(*) FROM test_runs WHERE episode_id = ?", (ep["id"],)).fetchone()[0] == 1


def _open_new_store(path: str, errors) -> None:
    try:
        from learnagent.store.db import connect, migrations

        conn = connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
        conn.close()
    except BaseException:
        errors.put(traceback.format_exc())


def test_many_processes_migrating_a_new_store_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    path = str(tmp_path / "fresh.db")
    procs = [ctx.Process(target=_open_new_store, args=(path, errors)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [], "\n".join(found)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"episodes", "messages", "forgotten_episodes", "recording"} <= tables


def test_parallel_do_runs_in_one_repository(git_repo, tmp_path):
    """Several real `learnagent do` processes at once: every episode recorded, distinct, no lock errors."""
    scripts = [write_script(tmp_path / f"s{i}.json", [f"<run>echo run-{i}; sleep 0.3</run>",
                                                       f"<write path=\"f{i}.txt\">\nfile {i}\n</write>",
                                                       f"<finish>done {i}</finish>"]) for i in range(4)]
    before = git(git_repo, "status", "--porcelain", "--untracked-files=all")

    def one(i):
        return run_cli("do", f"task number {i}", "--model", f"scripted:{scripts[i]}", "--no-apply",
                       "--sandbox", "none", cwd=git_repo, timeout=240)

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(one, range(4)))
    for out in outs:
        assert out.returncode == 0, out.stderr + out.stdout
        assert "locked" not in out.stderr + out.stdout
    db = sqlite3.connect(home.db_path())
    rows = db.execute("SELECT id, task, status, summary, branch FROM episodes ORDER BY task").fetchall()
    assert [r[1] for r in rows] == [f"task number {i}" for i in range(4)]
    assert len({r[0] for r in rows}) == 4 and all(r[2] == "finished" for r in rows)
    assert [r[3] for r in rows] == [f"done {i}" for i in range(4)]
    for i, (eid, *_rest) in enumerate(rows):
        results = [r[0] for r in db.execute("SELECT result FROM tool_calls WHERE episode_id = ? AND name = 'run'",
                                             (eid,))]
        assert any(f"run-{i}" in r for r in results) and not any(f"run-{j}" in r for r in results for j in
                                                                   range(4) if j != i)
    # each agent worked on its own branch; the user's tree is untouched
    branches = git(git_repo, "branch", "--list", "learnagent/*")
    assert all(f"learnagent/{r[0]}" in branches for r in rows)
    assert git(git_repo, "status", "--porcelain", "--untracked-files=all") == before
