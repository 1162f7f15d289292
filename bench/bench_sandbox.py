"""Sandbox and episode-folder overhead: per command, per episode start, per recorded result.

Run: python bench/bench_sandbox.py [--runs 30] [--files 2000] [--out docs/benchmarks/sandbox.md]

1. Per command: wall time of `Sandbox.run("true")` and `Sandbox.run("python -c pass")` under
   each kind, in an episode folder as `learnagent do` makes it (agent/worktree.py), with the
   user's repository hidden (`hide=`), so the bwrap mounts are the ones an episode gets.
2. Per episode, on a generated repository of `--files` files (40 folders, ~2 KB each, packed):
   - start: the episode folder. Before (linked worktree): `git worktree add -b`. Now:
     `create_worktree` (own repository: pack of the base blobs, index, checkout-index).
   - result, after an agent changed 10 files and added 2. Before: `git add -A` with the
     artifact pathspecs + `git commit` in the linked worktree (the way that ran agent-written
     config). Now: `commit_all` (Python walk of the folder, hashing every file, hardened
     hash-object/update-index/write-tree/commit-tree/update-ref in the user's repository).
   "Before" is measured by running those git commands here; the per-command "before" numbers
   come from running this file's previous version against the previous code (see the doc).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from learnagent.agent import worktree as wt
from learnagent.core.repository import Repository
from learnagent.sandbox import Sandbox, bwrap_available

ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
OLD_EXCLUDES = [f":(exclude,glob)**/{n}" for n in wt.ARTIFACTS] + [f":(exclude,glob)**/{n}/**" for n in wt.ARTIFACTS]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, env=ENV, capture_output=True, text=True).stdout


def make_repo(base: Path, files: int) -> Path:
    repo = base / "repo"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        path = repo / f"pkg{i % 40}" / f"mod{i}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(60)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    _git(repo, "gc", "-q")  # packed, as a repository that has lived a while is
    return repo


def agent_edits(folder: Path) -> None:
    for i in range(10):
        path = folder / f"pkg{i % 40}" / f"mod{i}.py"
        path.write_text(path.read_text() + "# edited\n")
    (folder / "new_a.py").write_text("A = 1\n")
    (folder / "pkg0" / "new_b.py").write_text("B = 2\n")


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)


def row(label: str, what: str, times: list[float]) -> tuple[str, str, float, float]:
    return label, what, statistics.median(times) * 1000, times[int(0.9 * (len(times) - 1))] * 1000


def bench_commands(repo: Path, runs: int) -> list[tuple]:
    rows = []
    folder, _ = wt.create_worktree(Repository.at(repo), "benchcmd", "HEAD")
    for kind in ["none"] + (["bwrap"] if bwrap_available() else []):
        sb = Sandbox(folder, mode="none" if kind == "none" else "require", hide=wt.user_repository_paths(Repository.at(repo)))
        for command in ("true", "python -c pass"):
            def one():
                assert sb.run(command, timeout=60).exit_code == 0
            rows.append(row(kind, f"`{command}`", timed(one, runs)))
        sb.close()
    wt.remove_worktree(repo, folder, "learnagent/benchcmd", delete_branch=True)
    return rows


def bench_episode(repo: Path, runs: int) -> list[tuple]:
    head = _git(repo, "rev-parse", "HEAD").strip()
    counter = iter(range(10**6))
    rows = []

    def old_start():
        n = next(counter)
        path = repo.parent / f"old{n}"
        _git(repo, "worktree", "add", "-q", "-b", f"old/{n}", str(path), head)
        return path

    def new_start():
        return wt.create_worktree(Repository.at(repo), f"new{next(counter)}", head)[0]

    made_old, made_new = [], []
    rows.append(row("before: linked worktree", "start (`git worktree add`)",
                    timed(lambda: made_old.append(old_start()), runs)))
    rows.append(row("now: own checkout", "start (`create_worktree`)",
                    timed(lambda: made_new.append(new_start()), runs)))
    for path in made_old + made_new:
        agent_edits(path)
    old_iter, new_iter = iter(made_old), iter(made_new)

    def old_result():
        path = next(old_iter)
        _git(path, "add", "-A", "--", ".", *OLD_EXCLUDES)
        _git(path, "diff", "--cached", "--name-only")
        _git(path, "-c", "user.name=l", "-c", "user.email=l@x", "commit", "-q", "--no-verify", "-m", "m")
        _git(path, "rev-parse", "HEAD")

    def new_result():
        path = next(new_iter)
        assert wt.commit_all(Repository.at(repo), path, base=head, branch=f"learnagent/{path.name}", message="m")

    rows.append(row("before: linked worktree", "result (`git add -A` + `commit`)", timed(old_result, runs)))
    rows.append(row("now: own checkout", "result (`commit_all`)", timed(new_result, runs)))
    for path in made_old:
        _git(repo, "worktree", "remove", "--force", str(path))
    for path in made_new:
        wt.remove_worktree(repo, path, f"learnagent/{path.name}", delete_branch=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="la-bench-sandbox-", dir="/var/tmp"))
    os.environ["LEARNAGENT_HOME"] = str(data / "home")  # outside /tmp: the mounts an episode really gets
    try:
        commands = bench_commands(make_repo(data / "small", 2), args.runs)
        episode = bench_episode(make_repo(data / "big", args.files), max(5, args.runs // 3))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [
        "# Sandbox per-command overhead",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, git {_git(Path('.'), '--version').split()[-1]}; "
        f"date {datetime.date.today()}; load average {load:.1f} at the end.",
        "Command: `python bench/bench_sandbox.py`. Wall time of `Sandbox.run` including process start, "
        "the pids cgroup (when available) and the clean-up; the episode folder and the hidden user "
        "repository as `learnagent do` sets them up.",
        "",
        f"| kind | command | median ms | p90 ms |  ({args.runs} runs each)",
        "|---|---|---:|---:|",
    ] + [f"| {k} | {c} | {m:.1f} | {p:.1f} |" for k, c, m, p in commands] + [
        "",
        f"## Episode start and result ({args.files} files, 10 changed + 2 added; {max(5, args.runs // 3)} runs each)",
        "",
        "| layout | step | median ms | p90 ms |",
        "|---|---|---:|---:|",
    ] + [f"| {k} | {c} | {m:.1f} | {p:.1f} |" for k, c, m, p in episode]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
