"""`learnagent sleep` at its defaults, as a user runs it, on the convention repository (SmolLM2-135M, CPU).

bench/convention_repo.py builds the repository (27 commits, four house conventions); then the real
CLI: `learnagent history import`, `learnagent sleep` (no options, or `--max-minutes M`), timed (wall
and the CPU time of the sleep process). The adapter sleep registered is then measured on code
nothing trained on, for base (no context), base + context (the ceiling) and base + adapter (no
context), with internalization ratios (adapter - base) / (context - base):

- the gate's own measure (learning/behaviour.py, recorded in the registry by sleep): per-token NLL
  and greedy next-line exact match on the repository's held-out files, context = conventions +
  retrieved similar files;
- the bench measure (bench/learning_eval.py): the 48 raw-text probes that start the 12 held-out
  modules (which are in no commit), their next lines and NLL, context = conventions + the most
  similar training module; drift (KL to the base, chat and raw text) and leaks of repository names
  into unrelated code;
- the gate's verdict for sampling seeds 0..S-1 (`run_gate` as sleep calls it, only GateConfig.seed
  changes: the code measure samples nothing, the chat drift and the secondary gap do).

    python bench/bench_sleep.py [--max-minutes M] [--seeds 5] [--dir DIR] [--out docs/benchmarks/sleep.md]

`--dir` keeps the repository and data home; a second call with the same --dir measures the adapter
already there instead of sleeping again. Writes the markdown report (keeping the analysis written
under it by hand) and DIR/result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LEARNAGENT = str(Path(sys.executable).parent / "learnagent")


def ratio(base: float, ceiling: float, adapter: float) -> float | None:
    return None if ceiling == base else (adapter - base) / (ceiling - base)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def run_cli(args: list[str], repo: Path, env: dict) -> tuple[str, float, float]:
    """(output, wall seconds, CPU seconds of the child) of one learnagent command in `repo`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    print(f"$ learnagent {' '.join(args)}", flush=True)
    proc = subprocess.Popen([LEARNAGENT, *args], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = ""
    for line in proc.stdout:  # no terminal: sleep prints a line every 5% of its steps
        print(line, end="", flush=True)
        out += line
    proc.wait()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"({wall:.0f} s, exit {proc.returncode})", flush=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"learnagent {' '.join(args)} failed with exit code {proc.returncode}")
    return out, wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def sleep_once(work: Path, max_minutes: float | None) -> dict:
    import convention_repo as cr

    state = work / "sleep.json"
    if state.is_file():
        return json.loads(state.read_text())
    repo = work / "repo"
    if not repo.exists():
        cr.build_repo(repo)
    env = dict(os.environ, LEARNAGENT_HOME=str(work / "home"), LEARNAGENT_CONFIG=str(work / "no-user-config.toml"))
    run_cli(["history", "import"], repo, env)
    load_before = os.getloadavg()
    out, wall, cpu = run_cli(["sleep"] + (["--max-minutes", f"{max_minutes:g}"] if max_minutes else []), repo, env)
    result = {"output": out, "wall_s": wall, "cpu_s": cpu, "load_before": load_before, "load_after": os.getloadavg(),
              "max_minutes": max_minutes}
    state.write_text(json.dumps(result, indent=1))
    return result


def registered(work: Path) -> "AdapterVersion | None":
    os.environ["LEARNAGENT_HOME"] = str(work / "home")
    from learnagent.core.repository import Repository
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store

    store = Store()
    try:
        rows = Registry(store, Repository.at(work / "repo")).list()
    finally:
        store.close()
    return rows[-1] if rows else None


def code_rows(code: dict) -> dict:
    """The gate's behaviour report (registry metrics) -> {variant: (nll, exact)} and its ratios."""
    v = code.get("variants") or {}
    return {name: (v[name]["nll"], v[name]["exact"]) for name in ("base", "context", "adapter") if name in v}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the measurement (sleep uses its own)")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/sleep.md"))
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-sleep-"))
    work.mkdir(parents=True, exist_ok=True)
    slept = sleep_once(work, args.max_minutes)
    row = registered(work)
    result = {"sleep": slept, "version": row and row.version, "status": row and row.status}
    if row is None or not (work / "home").exists():
        raise SystemExit("sleep registered no adapter")

    import torch

    import convention_repo as cr
    import learning_eval as le
    from learnagent.core.modelhub import installed_default_path
    from learnagent.learning import pairs as pairs_mod
    from learnagent.learning.code_pairs import mine_code
    from learnagent.runtime.loading import load_with_adapters
    from learnagent.learning.gate import GateConfig, run_gate
    from learnagent.core.repository import Repository
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store

    torch.set_num_threads(args.threads)
    version = row.version
    store = Store()
    reg = Registry(store, Repository.at(work / "repo"))
    folder = reg.folder(version)
    metrics = row.metrics
    result["gate"] = {k: metrics.get(k) for k in ("accepted", "reason", "drift", "code_drift", "comparison", "code")}
    result["train"] = metrics.get("train", {})
    model, tok = load_with_adapters(str(installed_default_path()), {version: folder})

    started = time.time()
    rows = {"base": le.evaluate_variant(model, tok, "base"), "context": le.evaluate_variant(model, tok, "context"),
            "adapter": le.evaluate_variant(model, tok, "adapter", version)}
    for name, r in rows.items():
        r["probes"].pop("completions", None)
        print(name, le.summary(r), flush=True)
    result["bench"] = rows
    result["bench_seconds"] = time.time() - started

    root = work / "repo"
    corpus = mine_code(root, store, reg.repo_id, heldout_fraction=0.2)
    _train, heldout = pairs_mod.build_pairs(store, reg.repo_id, conventions_root=root, heldout_fraction=0.2, seed=0,
                                            heldout_files=corpus.is_heldout_file)
    seeds = []
    for seed in range(args.seeds):
        t = time.time()
        g = run_gate(model, tok, heldout, candidate=version, previous=None, code=corpus,
                     config=GateConfig(seed=seed))
        c = g.comparison
        seeds.append({"seed": seed, "accepted": g.accepted, "reason": g.reason, "drift": g.drift,
                      "code_drift": g.code_drift, "gain": c.gain, "gain_low": c.gain_low, "nll": c.nll,
                      "exact": c.exact, "gap": g.gap, "prev_gap": g.prev_gap, "seconds": time.time() - t})
        print("seed", seeds[-1], flush=True)
    store.close()
    result["seeds"] = seeds
    result["load_end"] = os.getloadavg()
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    write_report(args, work, result)


def write_report(args, work: Path, r: dict) -> None:
    s, b, g = r["sleep"], r["bench"], r["gate"]
    train = r["train"]
    base, ctx, ad = b["base"], b["context"], b["adapter"]
    probes = {k: v["probes"]["hits"] for k, v in b.items()}
    n_probes = base["probes"]["n"]
    nl = {k: v["next_line"] for k, v in b.items()}
    checks = " / ".join(f"{c} {base['probes']['by_check'][c]}/{ctx['probes']['by_check'][c]}/"
                        f"{ad['probes']['by_check'][c]}" for c in base["probes"]["by_check"])
    code = code_rows(g.get("code") or {})
    lines = []
    if code:
        (bn, be), (cn, ce), (an, ae) = code["base"], code["context"], code["adapter"]
        lines.append(f"| gate: held-out files of the repository (retrieved context) | NLL | {bn:.3f} | {cn:.3f} | "
                     f"{an:.3f} | {fmt(ratio(bn, cn, an))} |")
        lines.append(f"| | next-line exact | {be:.1%} | {ce:.1%} | {ae:.1%} | {fmt(ratio(be, ce, ae))} |")
    lines.append(f"| bench: 12 held-out modules (in no commit) | NLL | {nl['base']['nll']:.3f} | "
                 f"{nl['context']['nll']:.3f} | {nl['adapter']['nll']:.3f} | "
                 f"{fmt(ratio(nl['base']['nll'], nl['context']['nll'], nl['adapter']['nll']))} |")
    lines.append(f"| | next-line exact | {nl['base']['exact']}/{nl['base']['lines']} | "
                 f"{nl['context']['exact']}/{nl['context']['lines']} | {nl['adapter']['exact']}/{nl['adapter']['lines']} | "
                 f"{fmt(ratio(nl['base']['exact'], nl['context']['exact'], nl['adapter']['exact']))} |")
    lines.append(f"| | probes followed (of {n_probes}) | {probes['base']} | {probes['context']} | {probes['adapter']} | "
                 f"{fmt(ratio(probes['base'], probes['context'], probes['adapter']))} |")
    gen = ad["general"]
    seed_rows = "\n".join(
        f"| {x['seed']} | {'promote' if x['accepted'] else 'reject'} | {x['gain']:+.1%} (≥ {x['gain_low']:+.1%}) | "
        f"{x['exact']:.1%} | {x['drift']:.3f} | {x['code_drift']:.3f} | {fmt(x['gap'], '.4f')} / "
        f"{fmt(x['prev_gap'], '.4f')} | {x['seconds']:.0f} |" for x in r["seeds"])
    verdicts = {x["accepted"] for x in r["seeds"]}
    la, lb, le_ = s["load_before"], s["load_after"], r["load_end"]
    option = f" --max-minutes {s['max_minutes']:g}" if s.get("max_minutes") else ""
    text = f"""# `learnagent sleep` at its defaults on the convention repository

`python bench/bench_sleep.py{' --max-minutes ' + format(s['max_minutes'], 'g') if s.get('max_minutes') else ''} --seeds {args.seeds} --threads {args.threads}`, {date.today()}, {platform.machine()} CPU, 2 cores shared with other
engineers' runs (load average {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} before sleep, {lb[0]:.1f} / {lb[1]:.1f} /
{lb[2]:.1f} after it, {le_[0]:.1f} at the end). SmolLM2-135M-Instruct, the real CLI: `learnagent history import`,
then `learnagent sleep{option}`.

## The run

- sleep: **{s['wall_s'] / 60:.1f} min wall**, {s['cpu_s'] / 60:.1f} CPU-min (the sleep process and its children);
  training {train.get('steps')} of {train.get('target_steps')} steps in {train.get('seconds', 0) / 60:.1f} min; then the gate.
- registered **{r['version']}: {r['status']}** — {g.get('reason')}
- what sleep printed (last lines):

```
{chr(10).join(s['output'].strip().splitlines()[-6:])}
```

## What the adapter writes on code nothing trained on

Greedy, no context for base and adapter; internalization = (adapter - base) / (context - base)
(≥ 1.0: the adapter without context does as well as the base model with it; for NLL lower is better,
the ratio reads the same way).

| held-out data | measure | base | base + context | base + adapter | internalization |
|---|---|---|---|---|---|
""" + "\n".join(lines) + f"""

Probes by convention (base / context / adapter): {checks}.
Drift of the adapter (KL to the base, nats/token, on its own samples of unrelated prompts): chat
{gen['drift_chat']:.3f}, raw-text code {gen['drift_text']:.3f}; the gate's deterministic code drift {fmt(g.get('code_drift'), '.3f')};
unrelated raw-text prompts whose greedy completion shows a repository name: {gen['leaks']}/{gen['n']}
(base: {base['general']['leaks']}/{base['general']['n']}).

## The gate's verdict across sampling seeds

`run_gate` on the registered adapter as sleep calls it (its held-out files and episodes), only
`GateConfig.seed` changed. The held-out code measure is teacher-forced (no sampling), so its numbers are
identical for every seed; the chat drift and the secondary distillation gap are sampled.
**Verdicts: {', '.join('promote' if v else 'reject' for v in sorted(verdicts))} ({'stable' if len(verdicts) == 1 else 'NOT stable'} over {len(r['seeds'])} seeds).**

| seed | verdict | NLL gain vs base (bootstrap low) | next-line exact | chat drift | code drift | gap / base's gap | s |
|---|---|---|---|---|---|---|---|
{seed_rows}
"""
    from report_file import write_keeping_analysis

    write_keeping_analysis(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
