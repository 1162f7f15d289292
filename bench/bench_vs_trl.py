"""Our sleep trainers against TRL's on-policy self-distillation (trl.experimental.sdft.SDFTTrainer)
on SmolLM2-135M, CPU. Writes docs/benchmarks/sleep_vs_trl.md.

    python bench/bench_vs_trl.py [--steps 8] [--G 4] [--max-new-tokens 32] [--threads 2] [--lr 1e-3]
                                 [--shape short|episode]

`--shape short` (default): one-line prompts (x ~40 tokens, c + x ~70), the data of the
efficacy comparison. `--shape episode`: the same tasks as learnagent's pair builder shapes
imported history (x ~490 tokens, c + x ~710), the lengths sleep trains on; written to
docs/benchmarks/sleep_vs_trl_episode.md.

1. Throughput and peak memory: `train_opsd` and TRL's SDFTTrainer, each in its own
   subprocess (bench/vs_trl_workers.py), same model, same 16 (x, c) pairs, same G, max new
   tokens, LoRA rank, lr, schedule, steps, top-k reverse KL. Student tokens/s over the whole
   step (sampling + teacher scoring + student forward/backward + optimizer).
2. Learning efficacy at equal student tokens: the OPSD and TRL adapters from (1) and an SFT
   adapter trained on as many target tokens as OPSD sampled, evaluated on
   bench/probes/convention.jsonl (adherence, gap, internalization ratios, drift).
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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))


from report_file import write_keeping_analysis  # noqa: E402 (bench/ is put on sys.path above)


def run_job(spec: dict, tmp: Path) -> dict:
    spec_file = tmp / f"{spec['job']}.spec.json"
    spec["result"] = str(tmp / f"{spec['job']}.result.json")
    spec_file.write_text(json.dumps(spec))
    print(f"== {spec['job']}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BENCH / "vs_trl_workers.py"), str(spec_file)],
                          env=os.environ | {"HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    log = proc.stdout
    (tmp / f"{spec['job']}.log").write_text(log)
    if proc.returncode != 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
        return {"error": tail.splitlines()[-1] if tail else f"exit {proc.returncode}", "log_tail": tail}
    result = json.loads(Path(spec["result"]).read_text())
    result["process_seconds"] = time.perf_counter() - started
    return result


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "peft", "trl", "accelerate", "datasets")}


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def throughput_rows(results: dict) -> list[str]:
    rows = ["| trainer | steps | student tokens | train s | tokens/s | tokens/s after step 1 | s/step | sampling s | teacher s | "
            "student fwd s | rest (bwd+opt) s | RSS after load MB | peak RSS MB | peak - loaded MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error']} |" + " |" * 12)
            continue
        b = r.get("breakdown") or {}
        rest = r["seconds"] - sum(b.values()) if b else None
        rows.append(f"| {name} | {r['steps']} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens'] / r['seconds']:.2f} | {fmt(steady(r), 2)} | "
                    f"{r['seconds'] / max(r['steps'], 1):.2f} | {fmt(b.get('sampling'), 1)} | {fmt(b.get('teacher'), 1)} | "
                    f"{fmt(b.get('student_fwd'), 1)} | {fmt(rest, 1)} | {r['rss_loaded_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                    f"{r['peak_rss_mb'] - r['rss_loaded_mb']:.0f} |")
    return rows


def steady(r: dict) -> float | None:
    """Tokens/s from the end of step 1 to the end of the last step (first-call warm-up excluded)."""
    marks = r.get("marks") or []
    if len(marks) < 3:
        return None
    (t1, n1), (tn, nn) = marks[1], marks[-1]
    return (nn - n1) / (tn - t1) if tn > t1 else None


def efficacy_rows(ev: dict, trained: dict) -> list[str]:
    rows = ["| variant | student tokens trained | adherence | gap (nats/token) | adherence internalization | "
            "gap internalization | drift (KL to base, nats/token) |", "|---|---|---|---|---|---|---|"]
    for name, v in ev["variants"].items():
        ratio = v.get("internalization", {})
        tokens = trained.get(name, {}).get("tokens", "-")
        rows.append(f"| {name} | {tokens} | {fmt(v['adherence'])} | {fmt(v['gap'], 4)} | "
                    f"{fmt(ratio.get('adherence'), 2) if ratio else '-'} | {fmt(ratio.get('gap'), 2) if ratio else '-'} | "
                    f"{fmt(v['drift'], 4)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps for OPSD and TRL (1 prompt x G each)")
    ap.add_argument("--G", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--skip-first", type=int, default=2)
    ap.add_argument("--kl-clip", type=float, default=2.0, help="ours only (TRL has no per-token KL clip)")
    ap.add_argument("--lambda-ret", type=float, default=0.0, help="ours only; 0 = same work per step as TRL")
    ap.add_argument("--trl-gradient-checkpointing", action="store_true", help="TRL's default; off = like ours")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-samples", type=int, default=2)
    ap.add_argument("--eval-max-new-tokens", type=int, default=32)
    ap.add_argument("--drift-prompts", type=int, default=6)
    ap.add_argument("--only", default="opsd,trl,sft,eval", help="comma list of jobs to run")
    ap.add_argument("--shape", choices=("short", "episode"), default="short",
                    help="pair lengths: one-line prompts, or pairs shaped like imported history")
    ap.add_argument("--out", type=Path, default=None,
                    help="default docs/benchmarks/sleep_vs_trl.md (short) or sleep_vs_trl_episode.md (episode)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = ap.parse_args()
    if args.out is None:
        args.out = ROOT / "docs" / "benchmarks" / ("sleep_vs_trl.md" if args.shape == "short" else
                                                   "sleep_vs_trl_episode.md")

    import vs_trl_data

    from learnagent.core.modelhub import installed_default_path

    model = installed_default_path()
    if model is None:
        sys.exit("SmolLM2-135M is not installed: run `learnagent model install` first")
    probes = vs_trl_data.write_probes(BENCH / "probes" / "convention.jsonl")
    jobs = args.only.split(",")
    train = vs_trl_data.train_records() if args.shape == "short" else vs_trl_data.episode_records()
    lengths = pair_lengths(model, train)
    common = {"model": str(model), "train": train, "steps": args.steps, "G": args.G,
              "max_new_tokens": args.max_new_tokens, "rank": args.rank, "lr": args.lr, "k": args.k,
              "skip_first": args.skip_first, "kl_clip": args.kl_clip, "lambda_ret": args.lambda_ret,
              "threads": args.threads, "seed": args.seed, "warmup_steps": max(1, args.steps // 20),
              "trl_gradient_checkpointing": args.trl_gradient_checkpointing}
    started = time.perf_counter()
    trained, adapters = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-vs-trl-") as tmp:
        tmp = Path(tmp)
        for job in ("opsd", "trl"):
            if job in jobs:
                trained[job] = run_job(common | {"job": job, "out": str(tmp / job)}, tmp)
                if "error" not in trained[job]:
                    adapters[job] = str(tmp / job)
        if "sft" in jobs:
            budget = trained.get("opsd", {}).get("tokens") or args.steps * args.G * args.max_new_tokens
            trained["sft"] = run_job(common | {"job": "sft", "steps": None, "token_budget": budget,
                                               "out": str(tmp / "sft")}, tmp)
            if "error" not in trained["sft"]:
                adapters["sft"] = str(tmp / "sft")
        ev = None
        if "eval" in jobs:
            ev = run_job(common | {"job": "eval", "probes": str(probes), "adapters": adapters,
                                   "eval_samples": args.eval_samples, "eval_max_new_tokens": args.eval_max_new_tokens,
                                   "drift_prompts": args.drift_prompts}, tmp)
    total = time.perf_counter() - started
    raw = {"args": vars(args) | {"out": str(args.out), "json": str(args.json)}, "trained": trained, "eval": ev,
           "lengths": lengths,
           "versions": versions(), "total_seconds": total}
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    write_report(args, raw)
    print(f"wrote {args.out} ({total / 60:.1f} min)", file=sys.stderr)


def write_report(args, raw) -> None:
    trained, ev, v = raw["trained"], raw["eval"], raw["versions"]
    lines = [
        "# Sleep trainer vs TRL (SDFT): throughput, memory, learning efficacy",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), no GPU; "
        f"torch threads {args.threads}; date {date.today().isoformat()}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Command: `python bench/bench_vs_trl.py {' '.join(sys.argv[1:])}` (total {raw['total_seconds'] / 60:.1f} min).",
        "",
        f"Config (both trainers): SmolLM2-135M-Instruct fp32 on CPU; 16 (x, c) pairs (bench/vs_trl_data.py, "
        f"shape {args.shape}: x {raw['lengths']['x']:.0f} tokens, c + x {raw['lengths']['cx']:.0f} tokens on average); "
        f"{args.steps} optimizer steps x 1 prompt x G={args.G} samples x <= {args.max_new_tokens} new tokens, "
        f"temperature 1, no top-k/top-p; LoRA r={args.rank}, alpha={2 * args.rank}, all-linear, dropout 0; "
        f"AdamW lr {args.lr}, weight decay 0, warm-up then cosine to 10%, grad clip 1.0; reverse KL on the "
        f"student's top-{args.k} + tail bucket, first {args.skip_first} tokens skipped; teacher = base model "
        f"(first night) reading c as a system message before x (TRL's prompt builder overridden to produce the "
        f"same teacher prompt). Ours only: per-token KL clip {args.kl_clip}, lambda_ret {args.lambda_ret}. "
        f"TRL: SDFTTrainer, bf16 off, gradient checkpointing {'on' if args.trl_gradient_checkpointing else 'off'}.",
        "",
        "## 1. Throughput and peak memory",
        "",
        "Each trainer in its own process; `train s` is the training loop only (model load excluded); "
        "peak RSS is the process's ru_maxrss (includes the libraries it imports: TRL brings datasets, pandas, pyarrow).",
        "",
        *throughput_rows({k: trained[k] for k in ("opsd", "trl") if k in trained}),
    ]
    o, t = trained.get("opsd", {}), trained.get("trl", {})
    if "tokens" in o and "tokens" in t:
        ratio = (o["tokens"] / o["seconds"]) / (t["tokens"] / t["seconds"])
        so, st = steady(o), steady(t)
        after = f" ({so / st:.2f}x after step 1)" if so and st else ""
        lines += ["", f"**Throughput ratio ours / TRL: {ratio:.2f}x**{after} student tokens/s; peak RSS ours / TRL: "
                      f"{o['peak_rss_mb'] / t['peak_rss_mb']:.2f}x "
                      f"(training overhead above the loaded model: {o['peak_rss_mb'] - o['rss_loaded_mb']:.0f} MB vs "
                      f"{t['peak_rss_mb'] - t['rss_loaded_mb']:.0f} MB)."]
    if ev and "variants" in ev:
        lines += ["", "## 2. Learning efficacy at equal student tokens", "",
                  f"Probes: bench/probes/convention.jsonl ({len(vs_trl_data_probe_ids())} probes, tasks disjoint from "
                  f"training), {args.eval_samples} samples each, <= {args.eval_max_new_tokens} new tokens, seeds as in "
                  f"learning/evaluate.py. SFT trained on as many target tokens as OPSD's student scored "
                  f"({trained.get('sft', {}).get('steps', '?')} steps). Gap: top-20 reverse KL to base + context on the "
                  f"variant's own samples; drift: full KL to base on {args.drift_prompts} general prompts.", "",
                  *efficacy_rows(ev, trained)]
    elif ev:
        lines += ["", "## 2. Learning efficacy", "", f"Evaluation failed: {ev.get('error')}"]
    write_keeping_analysis(args.out, "\n".join(lines))


def pair_lengths(model, train: list[dict]) -> dict:
    """Mean chat-templated token lengths of x (student prompt) and c + x (teacher prompt)."""
    from transformers import AutoTokenizer

    from learnagent.learning.rollout import encode

    tok = AutoTokenizer.from_pretrained(str(model))
    xs = [encode(tok, r["prompt"]).shape[1] for r in train]
    cxs = [encode(tok, r["prompt"], r["context"]).shape[1] for r in train]
    return {"x": sum(xs) / len(xs), "cx": sum(cxs) / len(cxs)}


def vs_trl_data_probe_ids():
    import vs_trl_data

    return [p["id"] for p in vs_trl_data.probe_records()]


if __name__ == "__main__":
    main()
