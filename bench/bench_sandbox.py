"""Per-command overhead of the sandbox: `true` and `python -c pass` under each kind.

Run: python bench/bench_sandbox.py [--runs 30] [--out docs/benchmarks/sandbox.md]
Makes a throwaway git repository + linked worktree (so the bwrap mounts include the git
layout an episode has) and reports median / p90 wall time per command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from learnagent.sandbox import Sandbox, bwrap_available


def make_worktree(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "i"], ["worktree", "add", "-q", str(base / "wt")]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return base / "wt"


def measure(sb: Sandbox, command: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        res = sb.run(command, timeout=60)
        times.append(time.perf_counter() - start)
        assert res.exit_code == 0, res.output
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kinds = ["none"] + (["bwrap"] if bwrap_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wt = make_worktree(Path(tmp))
        for kind in kinds:
            sb = Sandbox(wt, mode="none" if kind == "none" else "require")
            for command in ("true", "python -c pass"):
                times = sorted(measure(sb, command, args.runs))
                rows.append((kind, command, statistics.median(times) * 1000, times[int(0.9 * (len(times) - 1))] * 1000))
            sb.close()
    lines = [
        "# Sandbox per-command overhead",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}; date {datetime.date.today()}; {args.runs} runs each.",
        "Command: `python bench/bench_sandbox.py`. Wall time of `Sandbox.run` including process start, "
        "the pids cgroup (when available) and the clean-up.",
        "",
        "| kind | command | median ms | p90 ms |",
        "|---|---|---:|---:|",
    ] + [f"| {k} | `{c}` | {m:.1f} | {p:.1f} |" for k, c, m, p in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
