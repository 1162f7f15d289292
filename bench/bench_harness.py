"""Harness benchmarks: `learnagent --help` cold start, and the harness's overhead per agent step.

Overhead per step = wall time of a scripted episode (model time is ~0 for the scripted model and is
subtracted anyway) divided by its steps: parsing, tools, the store writes, the live display. Measured
with the sandbox off (pure harness) and with bubblewrap (each <run> pays the sandbox start).

    python bench/bench_harness.py            # writes docs/benchmarks/harness.md
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def help_cold_start(runs: int = 7) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "learnagent.cli.app", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def make_repo(root: Path, files: int = 200) -> Path:
    repo = root / "repo"
    (repo / "pkg").mkdir(parents=True)
    for i in range(files):
        (repo / "pkg" / f"mod{i}.py").write_text(
            f"def func{i}(x):\n    return helper{(i + 1) % files}(x) + {i}\n\n\ndef helper{i}(x):\n    return x * 2\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    return repo


def script(steps: int) -> list[str]:
    cycle = ['<read path="pkg/mod1.py"/>', '<search pattern="def helper1\\b" path="pkg"/>', '<list path="pkg"/>',
             '<run>true</run>',
             '<edit path="pkg/mod2.py">\n<<<<<<< SEARCH\n    return x * 2\n=======\n    return x * 2\n>>>>>>> REPLACE\n</edit>']
    return [cycle[i % len(cycle)] for i in range(steps - 1)] + ["<finish>bench</finish>"]


def episode_overhead(sandbox: str, steps: int = 50) -> dict:
    from learnagent.agent.models.scripted import ScriptedModel
    from learnagent.agent.run import run_episode
    from learnagent.agent.worktree import find_repo
    from learnagent.core.config import Config
    from learnagent.store.episodes import Store

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LEARNAGENT_HOME"] = str(Path(tmp) / "home")
        repo = find_repo(make_repo(Path(tmp)))
        cfg = Config()
        cfg.sandbox.mode = sandbox
        cfg.budgets.max_steps = steps + 1
        cfg.budgets.max_tokens = 10**9  # the prompt grows every step; only the step count should end it
        model = ScriptedModel(script(steps))
        with Store() as store:
            start = time.perf_counter()
            result = run_episode(repo, "benchmark the harness", cfg, model, store, run_tests=False)
            wall = time.perf_counter() - start
            model_s = sum(c.duration_s for c in store.get_episode(result.episode_id).model_calls)
    return {"sandbox": sandbox, "steps": result.steps, "wall_s": wall, "model_s": model_s,
            "per_step_ms": 1000 * (wall - model_s) / result.steps}


def main() -> None:
    helps = help_cold_start()
    rows = [episode_overhead("none")]
    from learnagent.sandbox import bwrap_available

    if bwrap_available():
        rows.append(episode_overhead("require"))
    when = dt.date.today().isoformat()
    lines = [
        "# Harness benchmarks", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, no GPU. "
        f"Date: {when}. Command: `python bench/bench_harness.py`.", "",
        "## `learnagent --help` cold start", "",
        f"{len(helps)} runs of `python -m learnagent.cli.app --help`: median {statistics.median(helps) * 1000:.0f} ms, "
        f"min {min(helps) * 1000:.0f} ms, max {max(helps) * 1000:.0f} ms.", "",
        "## Harness overhead per agent step (model time excluded)", "",
        "A scripted 50-step episode on a 200-file repository (read, search, list, `run true`, edit, in turn),",
        "recorded to the store, includes worktree creation, the repo map and the final commit.", "",
        "| sandbox | steps | wall s | model s | overhead per step ms |", "|---|---|---|---|---|",
    ]
    lines += [f"| {r['sandbox']} | {r['steps']} | {r['wall_s']:.2f} | {r['model_s']:.3f} | {r['per_step_ms']:.1f} |"
              for r in rows]
    out = ROOT / "docs" / "benchmarks" / "harness.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    print(json.dumps({"help_s": helps, "episodes": rows}))


if __name__ == "__main__":
    main()
