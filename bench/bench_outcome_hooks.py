"""How much a commit slows down with learnagent's outcome hooks installed.

Builds a throwaway repository with E open episodes (applied, not yet committed), then times
`git commit` of small changes with the hooks disabled (LEARNAGENT_HOOKS_DISABLE=1) and enabled,
and times attributing one commit in-process. Target: the hook adds well under a second per commit.

    python bench/bench_outcome_hooks.py [--episodes 50] [--commits 10] [--out docs/benchmarks/outcome_hooks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def git(repo, *args, env=None):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV, **(env or {})}).stdout


def timed_commits(repo: Path, n: int, tag: str, env=None) -> list[float]:
    out = []
    for i in range(n):
        (repo / f"{tag}{i}.txt").write_text(f"{tag} {i}\n")
        git(repo, "add", "-A")
        t = time.perf_counter()
        git(repo, "commit", "-qm", f"{tag} {i}", env=env)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LEARNAGENT_HOME"] = str(Path(tmp) / "home")
        from learnagent.core.config import OutcomesConfig
        from learnagent.core.githooks import install_hooks
        from learnagent.core.repository import Repository
        from learnagent.store.episodes import Store
        from learnagent.store.outcomes import process_commit

        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for i in range(20):
            (repo / f"m{i}.py").write_text("".join(f"def f{j}():\n    return {j}\n\n" for j in range(40)))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "init")
        base = git(repo, "rev-parse", "HEAD").strip()
        with Store() as store:
            rid = store.ensure_repo(Repository.at(repo))
            for e in range(a.episodes):
                f = f"m{e % 20}.py"
                diff = (f"diff --git a/{f} b/{f}\n--- a/{f}\n+++ b/{f}\n@@ -2,1 +2,2 @@\n-    return 0\n"
                        f"+    value = compute_{e}(0)\n+    return value\n")
                eid = store.create_episode(rid, f"task {e}", base_commit=base, branch=f"learnagent/{e}")
                store.finish_episode(eid, "finished", final_diff=diff)
                store.update_meta(eid, applied=True)
        plain = timed_commits(repo, a.commits, "plain", env={"LEARNAGENT_HOOKS_DISABLE": "1"})
        install_hooks(repo)
        hooked = timed_commits(repo, a.commits, "hooked")
        with Store() as store:
            (repo / "x.txt").write_text("x\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-qm", "x", env={"LEARNAGENT_HOOKS_DISABLE": "1"})
            t = time.perf_counter()
            process_commit(store, repo, git(repo, "rev-parse", "HEAD").strip(), OutcomesConfig(),
                           repo_id=Repository.at(repo).key)
            inproc = time.perf_counter() - t
    med_plain, med_hooked = statistics.median(plain), statistics.median(hooked)
    lines = [
        "# Outcome hooks: commit latency",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}",
        f"- repository: 20 files; {a.episodes} open episodes; {a.commits} commits each way",
        "",
        "| | median s/commit |",
        "|---|---|",
        f"| git commit, hooks disabled | {med_plain:.3f} |",
        f"| git commit, post-commit hook (new python process) | {med_hooked:.3f} |",
        f"| added by the hook | {med_hooked - med_plain:.3f} |",
        f"| attributing one commit in-process ({a.episodes} episodes) | {inproc:.3f} |",
        "",
        "Run: `python bench/bench_outcome_hooks.py --out docs/benchmarks/outcome_hooks.md`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
