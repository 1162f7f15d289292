"""Throughput of `train_opsd` (and `train_sft`) on the tiny test model and, when installed,
on the default SmolLM2-135M. Writes docs/benchmarks/opsd.md.

    python bench/bench_opsd.py [--steps 6] [--threads 2] [--out docs/benchmarks/opsd.md]

tokens/s counts completion tokens scored by the student with grad (new + replay); one
OPSD step = sample G completions + teacher scoring from the cached prefix + student
forward/backward + the retention term.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from report_file import write_keeping_analysis  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pairs(n: int):
    from learnagent.learning.pairs import Pair

    rule = ("## Lessons\n- Files changed: calc.py, tests/test_calc.py\n- New names: sub_values (snake_case)\n"
            "- Test command: pytest -q\n## The accepted change\n" + "+def sub_values(a, b):\n+    return a - b\n" * 8)
    system = {"role": "system", "content": "You are learnagent, a coding agent. Repository map:\n" + "calc.py: add\n" * 40}
    return [Pair(f"e{i}", [system, {"role": "user", "content": f"Task: add a function number {i}"}], rule,
                 "+def sub_values(a, b):\n+    return a - b\n") for i in range(n)]


def _say(step, total, stats):
    print(f"  step {step}/{total} loss {stats['loss']:.4f} kl {stats['kl']:.4f}", file=sys.stderr, flush=True)


def run(model, label, steps, config_kw, tmp):
    from learnagent.learning.opsd import TrainConfig, train_opsd
    from learnagent.learning.rollout import GENERAL_PROMPTS
    from learnagent.learning.sft import train_sft

    rows = []
    from learnagent.learning.train_common import ON_POLICY

    cfg = TrainConfig(steps=steps, checkpoint_every=0, low_priority=False, **(ON_POLICY | config_kw))
    started = time.perf_counter()
    r = train_opsd(model, _pairs(4), GENERAL_PROMPTS[:2], prev_adapter=None, out_dir=tmp / f"{label}-opsd",
                   config=cfg, progress=_say)
    rows.append((label, "opsd", cfg, r, time.perf_counter() - started))
    started = time.perf_counter()
    s = train_sft(model, _pairs(4), prev_adapter=None, out_dir=tmp / f"{label}-sft", config=cfg, progress=_say)
    rows.append((label, "sft", cfg, s, time.perf_counter() - started))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "opsd.md")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from learnagent.core.modelhub import installed_default_path
    from tiny_model import make_tiny_model_dir

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = make_tiny_model_dir(tmp / "tiny")
        rows += run(tiny, "tiny (2 layers, d=64)", args.steps,
                    dict(samples_per_prompt=4, max_new_tokens=32, rank=16), tmp)
        smol = installed_default_path()
        if smol is not None:
            rows += run(smol, "SmolLM2-135M", args.steps, dict(samples_per_prompt=4, max_new_tokens=32, rank=16),
                        tmp)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        "# OPSD / SFT training throughput",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, device {device}; torch {torch.__version__}. Date: {time.strftime('%Y-%m-%d')}.",
        "Written by `python bench/bench_opsd.py`. Pairs: 4 synthetic episodes, x ~280 tokens,",
        "c + x ~480 tokens; G=4 samples x 32 new tokens; replay: 2 general prompts (lambda_ret 0.1); LoRA r=16 all-linear.",
        "SFT scores the 20-token accepted diff only, so its tokens/s is not comparable to OPSD's (no sampling).",
        "",
        "| model | method | steps | tokens | wall s | tokens/s | s/step | peak RSS MB | loss first -> last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, method, cfg, r, wall in rows:
        lines.append(f"| {label} | {method} | {r.steps} | {r.tokens} | {wall:.1f} | {r.tokens_per_s:.1f} | "
                     f"{r.seconds / max(r.steps, 1):.2f} | {r.peak_rss_mb:.0f} | "
                     f"{r.losses[0]:.3f} -> {r.losses[-1]:.3f} |")
    text = "\n".join(lines) + "\n"
    write_keeping_analysis(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
