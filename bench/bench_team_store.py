"""Team store costs (issue 14): storage per episode on SQLite and PostgreSQL, `learnagent push` time
(first push and a second one that has nothing to send), and writers in parallel processes.

Synthetic episodes shaped like a `do` run (12 messages of ~1.5 KB, 10 tool calls with ~1 KB
results, one test run, a ~3 KB diff), written through the real Store; PostgreSQL is a throwaway
cluster of the distribution's server (tests/pg_server.py) on loopback, fsync off (as in the tests:
a real server's disk adds its own cost). Prints a markdown table; results in docs/benchmarks/team_store.md.

    .venv/bin/python bench/bench_team_store.py [--episodes 200] [--writers 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _text(rng, n):
    words = ["def", "return", "self", "value", "import", "class", "test", "assert", "for", "in", "if", "None"]
    out = []
    while sum(len(w) + 1 for w in out) < n:
        out.append(rng.choice(words) if rng.random() < 0.7 else "".join(rng.choices(string.ascii_lowercase, k=6)))
    return " ".join(out)


def write_episodes(target, repo: Path, n: int, seed: int) -> float:
    from learnagent.core.repository import Repository
    from learnagent.store.episodes import Store

    rng = random.Random(seed)
    t0 = time.perf_counter()
    with Store(target) as store:
        rid = store.ensure_repo(Repository.at(repo))
        for _ in range(n):
            eid = store.create_episode(rid, _text(rng, 120))
            for j in range(12):
                store.add_message(eid, j // 2, "assistant" if j % 2 else "user", _text(rng, 1500))
            for j in range(10):
                store.add_tool_call(eid, j, "read", {"path": f"src/m{j}.py"}, _text(rng, 1000), True, 0.01)
                store.add_model_call(eid, j, 2 * j + 1, 2 * j + 1, 900, 120, 0.8)
            store.add_test_run(eid, "final", "pytest -q", 0, _text(rng, 800), 2.0)
            store.finish_episode(eid, "finished", final_diff=_text(rng, 3000), summary=_text(rng, 100))
    return time.perf_counter() - t0


def _writer(target, repo, n, seed, out):
    out.put(write_episodes(target, Path(repo), n, seed))


def parallel(target, repo, writers, each) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(target, str(repo), each, 100 + i, out)) for i in range(writers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("LEARNAGENT_HOME", tempfile.mkdtemp(prefix="la-bench-home-"))
    from pg_server import Cluster, server_bin

    from learnagent.core.repository import Repository
    from learnagent.services import team
    from learnagent.store import team_rows
    from learnagent.store.episodes import Store

    work = Path(tempfile.mkdtemp(prefix="la-bench-team-"))
    repo = work / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # the store keys a Repository
    local = work / "local.db"
    cluster = Cluster(server_bin()).start()
    try:
        rows = []
        t_write = write_episodes(local, repo, args.episodes, 1)
        with Store(local) as store:
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            team_rows.join(store, store.ensure_repo(Repository.at(repo)), "acme/bench")
        sqlite_bytes = local.stat().st_size
        url = cluster.create_database("team")
        with Store(url) as shared:
            base = shared.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        with Store(local) as store, Store(url) as shared:
            t0 = time.perf_counter()
            first = team.push(store, shared, url)
            t_push = time.perf_counter() - t0
            t0 = time.perf_counter()
            second = team.push(store, shared, url)
            t_again = time.perf_counter() - t0
            shared.conn.execute("VACUUM ANALYZE")
            pg_bytes = shared.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] - base
        assert len(first.sent) == args.episodes and not second.sent and not second.updated
        n = args.episodes
        rows.append(("write, one process, SQLite", f"{n / t_write:.1f} episodes/s", f"{t_write:.1f} s for {n}"))
        rows.append(("storage per episode, SQLite file", f"{sqlite_bytes / n / 1024:.1f} KiB", ""))
        rows.append(("storage per episode, PostgreSQL (database size growth)", f"{pg_bytes / n / 1024:.1f} KiB", ""))
        rows.append(("first push (SQLite -> PostgreSQL, loopback)", f"{n / t_push:.1f} episodes/s", f"{t_push:.1f} s"))
        rows.append(("second push (nothing new)", f"{t_again * 1000:.0f} ms", ""))
        each = max(1, n // (2 * args.writers))
        for name, target in (("SQLite", work / "par.db"), ("PostgreSQL", cluster.create_database("par"))):
            t = parallel(target, repo, args.writers, each)
            rows.append((f"{args.writers} writer processes at once, {name}",
                         f"{args.writers * each / t:.1f} episodes/s", f"{t:.1f} s for {args.writers * each} "
                                                                         "(incl. interpreter start)"))
        print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f}\n")
        print("| measure | result | detail |\n|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
