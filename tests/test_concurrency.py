"""Many processes writing one episode store at once (WAL): no lock errors, nothing lost or mixed up.

Raw Store writers and readers, processes migrating a new store, parallel `learnagent do` runs,
and `do` runs going on for the whole of a `learnagent sleep` on the same store (tiny model).
The raw-writer and migration tests run on SQLite and on a real PostgreSQL server (`store_db`):
`do`-like writers, git-hook-like writers recording the same commits, and readers, all at once.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import traceback
from concurrent.futures import ThreadPoolExecutor

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.core.repository import Repository
from repo_helpers import folder_repository

N_PROCS = 6
EPISODES_EACH = 12
MESSAGES_EACH = 6
N_HOOKS = 3
COMMITS = 40


def _writer(proc: int, repo: str, start, errors) -> None:
    """One real process writing whole episodes; every text names its writer so mix-ups show."""
    try:
        from learnagent.store.episodes import Store

        start.wait()
        with Store() as store:
            rid = store.ensure_repo(folder_repository(repo))
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


def _hook_writer(proc: int, repo: str, start, errors) -> None:
    """What post-commit hooks in several clones do at once: every one records the same commits as
    processed and its own evidence per commit (ON CONFLICT on shared keys)."""
    try:
        from learnagent.store.episodes import Store

        start.wait()
        with Store() as store:
            rid = store.ensure_repo(folder_repository(repo))
            eid = store.create_episode(rid, f"hooked h{proc}")
            for c in range(COMMITS):
                with store.transaction():
                    if not store.commit_processed(rid, f"c{c}"):
                        store.add_outcome_event(eid, "match", commit=f"c{c}", matched=1, total=2)
                    store.mark_commit_processed(rid, f"c{c}")
                assert store.add_outcome_event(eid, "survival", commit=f"c{c}", matched=c, total=COMMITS)
    except BaseException:
        errors.put(f"hook {proc}: {traceback.format_exc()}")


def _reader(stop, errors) -> None:
    try:
        from learnagent.store.episodes import Store

        with Store() as store:
            while not stop.is_set():
                for ep in store.list_episodes(limit=20):
                    store.get_episode(ep.id)
    except BaseException:
        errors.put(f"reader: {traceback.format_exc()}")


def test_parallel_processes_write_without_lock_errors_or_mixups(tmp_path, store_db):
    ctx = mp.get_context("spawn")  # real separate interpreters, not forked copies of this one
    start, stop, errors = ctx.Event(), ctx.Event(), ctx.Queue()
    repo = str(tmp_path)
    procs = [ctx.Process(target=_writer, args=(p, repo, start, errors)) for p in range(N_PROCS)]
    procs += [ctx.Process(target=_hook_writer, args=(h, repo, start, errors)) for h in range(N_HOOKS)]
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

    from learnagent.store.episodes import Store

    store = Store()
    db = store.conn
    if store_db == "sqlite":
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rid = store.ensure_repo(folder_repository(tmp_path))
    assert sorted(r[0] for r in db.execute("SELECT sha FROM processed_commits WHERE repo_id = ?", (rid,))) == \
        sorted(f"c{c}" for c in range(COMMITS))
    hooked = db.execute("SELECT id FROM episodes WHERE task LIKE 'hooked %'").fetchall()
    assert len(hooked) == N_HOOKS
    for (eid,) in hooked:
        assert len(store.outcome_events(eid, "survival")) == COMMITS  # not one lost
    # each commit's match went to exactly one hook: the one that processed it first
    assert db.execute("SELECT COUNT(*) FROM outcome_events WHERE kind = 'match'").fetchone()[0] == COMMITS
    episodes = db.execute("SELECT * FROM episodes WHERE task NOT LIKE 'hooked %'").fetchall()
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
        from learnagent.store.db import connect, head_version

        conn = connect(path)
        if not path.startswith("postgresql://"):
            assert conn.execute("PRAGMA user_version").fetchone()[0] == head_version()
        assert [tuple(r) for r in conn.execute("SELECT version_num FROM alembic_version")] == [(f"{head_version():04d}",)]
        conn.close()
    except BaseException:
        errors.put(traceback.format_exc())


def test_many_processes_migrating_a_new_store_at_once(tmp_path, store_db):
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    path = os.environ["LEARNAGENT_DB"] if store_db == "postgresql" else str(tmp_path / "fresh.db")
    procs = [ctx.Process(target=_open_new_store, args=(path, errors)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [], "\n".join(found)
    if store_db == "postgresql":
        from learnagent.store.episodes import Store

        with Store(path) as store:
            tables = {r[0] for r in store.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    else:
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


def test_do_runs_while_sleep_trains_on_the_same_store(git_repo, tmp_path, tiny_model_dir):
    """Real `learnagent do` processes in one repository, DO_AT_ONCE at a time, for as long as a real
    `learnagent sleep` (tiny model) runs on the same store: it reads the episodes, reserves a
    version, trains, gates, and seals and registers the adapter while the `do` runs write theirs.
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from learnagent.core.config import Config, save_config
    from learnagent.learning.pairs import is_heldout
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store

    do_at_once, min_do, max_do = 2, 4, 16
    cfg = Config()
    cfg.model.name = f"local:{tiny_model_dir}"  # what sleep trains; the do runs pass a scripted model
    cfg.test.command = "true"
    save_config(git_repo, cfg)
    with Store() as store:  # good history episodes to learn from: 3 trained on, 1 held out
        rid = store.ensure_repo(Repository.at(git_repo))
        picked = [f"h{i:03d}" for i in range(40)]
        history = [e for e in picked if not is_heldout(e, 0.2)][:3] + [e for e in picked if is_heldout(e, 0.2)][:1]
        for eid in history:
            store.create_episode(rid, f"history {eid}", source="history", episode_id=eid)
            store.finish_episode(eid, "finished", final_diff=f"--- a/calc.py\n+++ b/calc.py\n+def h_{eid}():\n"
                                                             f"+    return 1\n")
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def script(i):  # every text carries the run's tag, so a message in the wrong episode shows
        return [f"<run>echo run-{i:02d}; sleep 1</run>", f"<write path=\"f{i:02d}.txt\">\nfile {i:02d}\n</write>",
                f"<run>echo again-{i:02d}; sleep 1</run>", f"<finish>done {i:02d}</finish>"]

    def one(i):
        path = write_script(tmp_path / f"s{i:02d}.json", script(i))
        return run_cli("do", f"task number {i:02d}", "--model", f"scripted:{path}", "--no-apply",
                       "--sandbox", "none", cwd=git_repo, env=env, timeout=240)

    log = tmp_path / "sleep.log"
    with open(log, "w") as fh:
        sleep = subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", "sleep", "--steps", "2"],
                                 cwd=git_repo, stdout=fh, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, **env, COLUMNS="120", PYTHONUNBUFFERED="1",
                                          PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]))
    futures, deadline = [], time.monotonic() + 240
    with ThreadPoolExecutor(do_at_once) as pool:  # keep DO_AT_ONCE running until the sleep has ended
        while (sleep.poll() is None or len(futures) < min_do) and len(futures) < max_do \
                and time.monotonic() < deadline:
            if sum(not f.done() for f in futures) < do_at_once:
                futures.append(pool.submit(one, len(futures)))
            time.sleep(0.05)
        outs = [f.result() for f in futures]
    sleep_rc = sleep.wait(timeout=240)
    sleep_out = log.read_text()
    n_do = len(outs)

    assert sleep_rc == 0, sleep_out
    for out in outs:
        assert out.returncode == 0, out.stderr + out.stdout
    for text in [sleep_out] + [o.stdout + o.stderr for o in outs]:
        assert "locked" not in text and "Traceback" not in text, text
    with Store() as store:
        row = Registry(store, Repository.at(git_repo)).get("v0001")
    assert row.status in ("promoted", "rejected"), row
    assert ("promoted v0001" if row.status == "promoted" else "v0001 rejected:") in sleep_out, sleep_out
    assert row.metrics["heldout_ids"] == history[3:]  # the do runs arriving meanwhile changed nothing

    db = sqlite3.connect(home.db_path())
    db.row_factory = sqlite3.Row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert sorted(r[0] for r in db.execute("SELECT id FROM episodes WHERE source = 'history'")) == sorted(history)
    rows = db.execute("SELECT * FROM episodes WHERE source = 'do' ORDER BY task").fetchall()
    assert [r["task"] for r in rows] == [f"task number {i:02d}" for i in range(n_do)]  # each exactly once
    # the do runs really overlapped the sleep's life: one was writing while the version was reserved
    sealed = json.loads((Repository.at(git_repo).adapters_dir / "v0001" / "lineage.json").read_text())["finished_at"]
    assert any(r["started_at"] < sealed and r["ended_at"] > row.created_at for r in rows)
    for i, ep in enumerate(rows):
        assert ep["status"] == "finished" and ep["summary"] == f"done {i:02d}", dict(ep)
        others = [f"{j:02d}" for j in range(n_do) if j != i]
        msgs = db.execute("SELECT seq, role, content FROM messages WHERE episode_id = ? ORDER BY seq",
                          (ep["id"],)).fetchall()
        assert [m["seq"] for m in msgs] == list(range(len(msgs)))
        text = "\n".join(m["content"] for m in msgs)
        assert f"task number {i:02d}" in text and not any(f"task number {j}" in text for j in others)
        said = [m["content"] for m in msgs if m["role"] == "assistant"]
        assert said == script(i), said
        results = [r[0] for r in db.execute("SELECT result FROM tool_calls WHERE episode_id = ? AND name = 'run'",
                                             (ep["id"],))]
        assert any(f"run-{i:02d}" in r for r in results) and any(f"again-{i:02d}" in r for r in results)
        assert not any(f"-{j}" in r for r in results for j in others)
    print(f"\n{n_do} do runs alongside one sleep ({row.status} v0001)")
