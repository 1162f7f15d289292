"""Does sleep's adapter change what the model writes? SmolLM2-135M on the convention repository
(bench/convention_repo.py), our trainer's methods side by side with TRL's SDFT and SFT at equal
training time, each evaluated without context on code it never trained on.

    python bench/bench_learning.py [--minutes 8] [--methods cd,opsd,trl,sft] [--parallel 2]
                                   [--threads 1] [--json out.json] [--out docs/benchmarks/learning.md]

Rows: base (no context), context (base reading the conventions + one example module /
the most similar training module: the ceiling), then each method's adapter with no context:
- held-out probes: 48 raw-text starts of the 12 held-out modules, greedy, each with its
  convention check (bench/convention_repo.py probes());
- held-out next line: greedy exact match of the 12 held-out modules' lines given the true code
  before them, and their per-token NLL (bench/learning_eval.py);
- internalization: (adapter - base) / (context - base) for both;
- drift: KL(adapter || base) per token on general prompts (chat and raw text); leaks: unrelated
  raw-text prompts whose greedy completion shows a repository name.
Each method runs in its own process (bench/learning_workers.py) for the same TRAINING time
(evaluations excluded), evaluated at `--curve` marks: the learning curve.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from report_file import write_keeping_analysis  # noqa: E402

# Named methods. "ours" = learning/opsd.py's trainer with these TrainConfig fields.
METHODS: dict[str, dict] = {
    # sleep's default (TrainConfig's defaults; docs/OPSD.md): the real continuation, NLL + forward KL
    # to the teacher on its top-k, lr 1e-3, retention 0.5 on the anchor's continuations of general prompts
    "default": {"job": "ours", "replay": "general", "config": {"steps": 30}},
    # context distillation alone: the same without the NLL (data_weight 0), lr 5e-4
    "cd": {"job": "ours", "config": {"data_weight": 0.0, "lr": 5e-4, "steps": 60}},
    # sleep's previous default: on-policy, reverse KL on the student's top-k, lr 1e-4, retention 0.1
    "opsd": {"job": "ours", "replay": "general",
             "config": {"targets": "student", "support": "student", "forward_weight": 0.0, "lr": 1e-4, "rank": 16,
                        "samples_per_prompt": 4, "max_new_tokens": 48, "lambda_ret": 0.1, "skip_first": 2,
                        "kl_clip": 2.0, "steps": 12}},
    "trl": {"job": "trl", "config": {"lr": 5e-4, "rank": 16, "samples_per_prompt": 4, "max_new_tokens": 48,
                                     "steps": 9}},
    "sft": {"job": "sft", "config": {"lr": 5e-4, "rank": 16, "lambda_ret": 0.0, "steps": 80}},
}


def run_job(spec: dict, tmp: Path) -> dict:
    spec_file = tmp / f"{spec['name']}.spec.json"
    spec["result"] = str(tmp / f"{spec['name']}.result.json")
    spec_file.write_text(json.dumps(spec))
    print(f"== {spec['name']} ({spec['job']})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    log_file = tmp / f"{spec['name']}.log"
    with open(log_file, "w") as log:
        proc = subprocess.run([sys.executable, str(BENCH / "learning_workers.py"), str(spec_file)],
                              env=os.environ | {"HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT)
    text = log_file.read_text()
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
        return {"error": tail.splitlines()[-1] if tail else f"exit {proc.returncode}", "log_tail": tail}
    result = json.loads(Path(spec["result"]).read_text())
    result["process_seconds"] = time.perf_counter() - started
    for line in text.splitlines():
        if line.startswith("  ["):
            print(line, file=sys.stderr)
    return result


def internalization(base: float, ceiling: float, value: float) -> float | None:
    span = ceiling - base
    return None if abs(span) < 1e-9 else (value - base) / span


def fmt(v, digits=2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(raw: dict) -> list[str]:
    base, ctx = raw["base"]["rows"]["base"], raw["base"]["rows"]["context"]
    rows = ["| variant | steps | train min | probes (48) | logger / error / audited / cents | internalization (probes) | "
            "next-line exact | internalization (next line) | NLL nats/token | drift chat | drift text | leaks |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def line(name, row, steps="-", minutes="-"):
        p, n, g = row["probes"], row["next_line"], row.get("general") or {}
        ip = internalization(base["probes"]["hits"], ctx["probes"]["hits"], p["hits"]) if name not in ("base", "context") else None
        inl = internalization(base["next_line"]["exact"], ctx["next_line"]["exact"], n["exact"]) \
            if name not in ("base", "context") else None
        bc = p["by_check"]
        rows.append(f"| {name} | {steps} | {minutes} | {p['hits']}/{p['n']} | {bc['logger']} / {bc['error']} / "
                    f"{bc['audited']} / {bc['cents']} | {fmt(ip) if ip is not None else '-'} | "
                    f"{n['exact']}/{n['lines']} | {fmt(inl) if inl is not None else '-'} | {n['nll']:.3f} | "
                    f"{fmt(g.get('drift_chat'), 3) if g else '-'} | {fmt(g.get('drift_text'), 3) if g else '-'} | "
                    f"{str(g['leaks']) + '/' + str(g['n']) if g else '-'} |")

    line("base", base)
    line("context", ctx)
    for name, r in raw["methods"].items():
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error']} |" + " |" * 10)
            continue
        final = r["curve"][-1]
        line(name, final, r["steps"], f"{r['train_seconds'] / 60:.1f}")
    return rows


def curve_rows(raw: dict) -> list[str]:
    rows = ["| method | train min | step | probes | next-line exact | NLL |", "|---|---|---|---|---|---|"]
    for name, r in raw["methods"].items():
        for point in r.get("curve", []):
            rows.append(f"| {name} | {point['train_minutes']:.1f} | {point['step']} | {point['probes']['hits']}/48 | "
                        f"{point['next_line']['exact']}/{point['next_line']['lines']} | {point['next_line']['nll']:.3f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training minutes per method (evaluation excluded)")
    ap.add_argument("--methods", default="default,trl,sft")
    ap.add_argument("--curve", default="1,2,4", help="training minutes at which to evaluate on the way")
    ap.add_argument("--parallel", type=int, default=1, help="methods trained at once (one process each)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                    help="override a method's TrainConfig field, e.g. cd.lr=1e-3 (repeatable)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "learning.md")
    ap.add_argument("--no-report", action="store_true", help="write only --json (experiments)")
    ap.add_argument("--base-from", type=Path, default=None,
                    help="take the base and context rows from an earlier run's --json (they are deterministic: "
                         "greedy and teacher-forced) instead of computing them again")
    args = ap.parse_args()

    from learnagent.core.modelhub import installed_default_path

    model = installed_default_path()
    if model is None:
        sys.exit("SmolLM2-135M is not installed: run `learnagent model install` first")
    methods = {}
    for name in args.methods.split(","):
        base_name = name.split("@")[0]  # cd@lr1e-3 style names reuse a preset
        methods[name] = json.loads(json.dumps(METHODS[base_name]))
    for item in args.set:
        key, value = item.split("=", 1)
        name, field = key.split(".", 1)
        try:
            value = json.loads(value)  # numbers, true/false, null
        except json.JSONDecodeError:
            pass  # a word: student, teacher, data, anchor, general, ...
        if field in ("replay", "accept"):
            methods[name][field] = value
        else:
            methods[name]["config"][field] = value
    load_before = os.getloadavg()
    common = {"model": str(model), "threads": args.threads, "seed": args.seed}
    curve = [float(m) for m in args.curve.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        tmp = Path(tmp)
        specs = [] if args.base_from else [common | {"job": "base", "name": "base"}]
        specs += [common | m | {"name": name, "budget_minutes": args.minutes, "out": str(tmp / name),
                                "eval_at": [c for c in curve if c < args.minutes]} for name, m in methods.items()]
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            results = dict(zip([s["name"] for s in specs], pool.map(lambda s: run_job(s, tmp), specs)))
    base = json.loads(args.base_from.read_text())["base"] if args.base_from else results.pop("base")
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "methods_config": methods,
           "base": base, "methods": results, "total_seconds": time.perf_counter() - started,
           "load_before": load_before, "load_after": os.getloadavg(), "versions": versions()}
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    if "error" in raw["base"]:
        sys.exit(f"base rows failed: {raw['base']['error']}")
    print("\n".join(table(raw)))
    if not args.no_report:
        write_report(args, raw)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("torch", "transformers", "peft", "trl"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def write_report(args, raw) -> None:
    v = raw["versions"]
    lines = [
        "# Learning that sticks: what the adapter writes without context (convention repository)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), no GPU; torch threads {args.threads}, "
        f"{args.parallel} training process(es) at once; date {date.today().isoformat()}; load average before "
        f"{raw['load_before'][0]:.1f}, after {raw['load_after'][0]:.1f}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Command: `python bench/bench_learning.py {' '.join(sys.argv[1:])}` (total {raw['total_seconds'] / 60:.1f} min).",
        "",
        (f"Base and context rows taken from `{args.base_from}` (deterministic: greedy probes, teacher-forced "
         "next line; same code and data)." if args.base_from else ""),
        f"SmolLM2-135M-Instruct fp32 on CPU, LoRA all-linear alpha = 2r. {args.minutes:g} CPU-minutes of training "
        "per method (the process's CPU time; evaluations excluded), on the code-continuation pairs of the repository's training files "
        "(bench/learning_data.py). Methods: " + "; ".join(
            f"`{n}` {m['job']} {json.dumps(m.get('config', {}))}" for n, m in raw["methods_config"].items()) + ".",
        "",
        "## Held-out behaviour, no context (except the context row)",
        "",
        *table(raw),
        "",
        "## Learning curves (adapter without context, by training minutes)",
        "",
        *curve_rows(raw),
    ]
    write_keeping_analysis(args.out, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
