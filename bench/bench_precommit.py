"""What learnagent's pre-commit hooks cost, through the real `pre-commit`.

A throwaway repository (20 files) uses this checkout's `.pre-commit-hooks.yaml` the way a user's
`.pre-commit-config.yaml` would (a git repository with the manifest and scripts/pre-commit-hook,
cloned by pre-commit at a fixed rev). Measured, each in a fresh PRE_COMMIT_HOME:
- learnagent-outcomes: `pre-commit install` + the first commit (clone, no environment build) and
  the size of pre-commit's cache after it; then the median of later commits;
- learnagent-review (opt-in): the median commit time with a promoted LoRA adapter on the default
  model (SmolLM2-135M-Instruct, installed by `learnagent model install`), and without any adapter
  (the hook only says there is none).

    python bench/bench_precommit.py [--commits 5] [--out docs/benchmarks/precommit.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
BIN = str(Path(sys.executable).parent)  # learnagent and pre-commit of this environment


def git(repo, *args, env=None):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV, **(env or {})}).stdout


def run(repo, argv, env):
    started = time.perf_counter()
    out = subprocess.run(argv, cwd=repo, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stdout}{out.stderr}")
    return time.perf_counter() - started, out.stdout + out.stderr


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def hooks_repo(where: Path) -> tuple[str, str]:
    repo = where / "hooks-repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / ".pre-commit-hooks.yaml", repo)
    shutil.copy2(ROOT / "scripts" / "pre-commit-hook", repo / "scripts")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "hooks")
    return str(repo), git(repo, "rev-parse", "HEAD").strip()


def user_repo(where: Path, name: str, hooks: list[dict], url: str, rev: str) -> Path:
    import yaml

    repo = where / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for i in range(20):
        (repo / f"m{i}.py").write_text("".join(f"def f{j}(x):\n    return x + {j}\n\n\n" for j in range(40)))
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": url, "rev": rev, "hooks": hooks}]}, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def commit_times(repo: Path, n: int, env: dict, tag: str) -> list[float]:
    times = []
    for i in range(n):
        path = repo / f"m{i % 20}.py"
        path.write_text(path.read_text() + f"\n\ndef {tag}_{i}(values):\n    total = 0\n"
                        "    for v in values:\n        total += v * 2\n    return total\n")
        git(repo, "add", "-A")
        seconds, _ = run(repo, ["git", "commit", "-qm", f"{tag} {i}"], env)
        times.append(seconds)
    return times


def promote_random_adapter(repo: Path) -> str:
    """A promoted LoRA (random, non-zero) on the default model, in the registry's layout."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from learnagent.core.repository import Repository
    from learnagent.core.modelhub import resolve_model

    _, target = resolve_model("smollm2")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(target),
                           LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = Repository.at(repo).adapters_dir / "v0001"
    model.save_pretrained(folder)
    (folder / "lineage.json").write_text(json.dumps({"episodes": []}))
    (folder.parent / "PROMOTED").write_text(json.dumps({"version": "v0001", "history": []}))
    return str(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["LEARNAGENT_HOME"] = str(tmp / "home")
        url, rev = hooks_repo(tmp)
        base_env = {**os.environ, **ENV, "PATH": BIN + os.pathsep + os.environ["PATH"]}

        # learnagent-outcomes only
        repo = user_repo(tmp, "outcomes", [{"id": "learnagent-outcomes"}], url, rev)
        subprocess.run([f"{BIN}/learnagent", "init", "--no-hooks", "--test-command", "true"], cwd=repo,
                       check=True, capture_output=True, env=base_env)
        env = {**base_env, "PRE_COMMIT_HOME": str(tmp / "pc-outcomes")}
        install_s, _ = run(repo, [f"{BIN}/pre-commit", "install", "--hook-type", "post-commit"], env)
        first = commit_times(repo, 1, env, "first")[0]
        cache = du(tmp / "pc-outcomes")
        venvs = len(list((tmp / "pc-outcomes").rglob("pyvenv.cfg")))
        later = commit_times(repo, a.commits, env, "later")
        plain = commit_times(repo, a.commits, {**env, "PRE_COMMIT_ALLOW_NO_CONFIG": "1",
                                               "SKIP": "learnagent-outcomes"}, "skipped")
        rows += [
            ("learnagent-outcomes: `pre-commit install`", f"{install_s:.2f} s"),
            ("learnagent-outcomes: first commit (clone of the hooks, no environment build)", f"{first:.2f} s"),
            ("pre-commit cache after the first commit", f"{cache / 1e6:.2f} MB, {venvs} Python environments"),
            (f"learnagent-outcomes: later commits (median of {a.commits})", f"{statistics.median(later):.2f} s"),
            (f"same commits with the hook skipped (SKIP=...; median of {a.commits})",
             f"{statistics.median(plain):.2f} s"),
        ]

        # learnagent-review (opt-in): without an adapter, then with one on SmolLM2-135M
        repo = user_repo(tmp, "review", [{"id": "learnagent-review"}], url, rev)
        subprocess.run([f"{BIN}/learnagent", "init", "--no-hooks", "--test-command", "true"], cwd=repo,
                       check=True, capture_output=True, env=base_env)
        env = {**base_env, "PRE_COMMIT_HOME": str(tmp / "pc-review")}
        run(repo, [f"{BIN}/pre-commit", "install", "--hook-type", "pre-commit"], env)
        commit_times(repo, 1, env, "warmup")  # the clone
        none = commit_times(repo, a.commits, env, "noadapter")
        model = promote_random_adapter(repo)
        with_adapter = commit_times(repo, a.commits, env, "adapter")
        rows += [
            (f"learnagent-review, no adapter yet (median of {a.commits})", f"{statistics.median(none):.2f} s"),
            (f"learnagent-review, adapter on SmolLM2-135M, 7 staged lines (median of {a.commits})",
             f"{statistics.median(with_adapter):.2f} s"),
        ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    pc_version = subprocess.run([f"{BIN}/pre-commit", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# pre-commit hooks: what they cost",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; machine: {platform.machine()}, {os.cpu_count()} CPUs, no GPU, "
        f"load average {load:.1f} at the end; python {platform.python_version()}; {pc_version}",
        f"- repository: 20 files; hooks from this checkout's .pre-commit-hooks.yaml (language: script, running "
        f"the installed learnagent); review model: {Path(model).name}, a random LoRA (r=8, q/v) promoted",
        "",
        "| measurement | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "Before (`language: python`, reported in issue 11, not re-measured here): the first commit built a",
        "pre-commit environment with learnagent and an unpinned (CUDA) torch: 6.2 GB, 1m41s.",
        "",
        "Run: `python bench/bench_precommit.py --out docs/benchmarks/precommit.md`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
