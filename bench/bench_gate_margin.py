"""How far apart two measurements of the same held-out gap land by sampling alone (SmolLM2-135M).

The gate used to compare the candidate's gap with the previous adapter's, each on its own samples.
Two models whose samples differ are compared like one model measured with two seeds; this
measures that seed-to-seed spread for the base model on synthetic repository pairs (the gap is now
a secondary number; the gate reads held-out code, bench_gate_behaviour.py). Writes
docs/benchmarks/gate_margin.md.

    python bench/bench_gate_margin.py [--seeds 5] [--pairs 6] [--samples 2] [--tokens 48]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXT = ("## Lessons\n- Files changed: store/db.py, tests/test_db.py\n- New names: open_db (snake_case)\n"
           "- Test command: pytest -q\n## Repository conventions\nAGENTS.md:\nUse pathlib, never os.path. "
           "Every public function has type hints and a one-line docstring. Errors raise StoreError.")
TASKS = ["Add a function that deletes a row by id.", "Add a helper that lists the tables.",
         "Make open_db create the parent folder.", "Add a function that counts the rows of a table.",
         "Add a vacuum helper.", "Add a function that exports a table to CSV.", "Add a migration runner.",
         "Add a function that renames a column."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/gate_margin.md"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learnagent.core.modelhub import installed_default_path
    from learnagent.learning.pairs import Pair
    from learnagent.learning.rollout import distillation_gap

    path = installed_default_path()
    if path is None:
        raise SystemExit("SmolLM2-135M is not installed (run `learnagent model install`)")
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    pairs = [Pair(f"h{i}", [{"role": "user", "content": t}], CONTEXT, None) for i, t in enumerate(TASKS[:args.pairs])]
    gaps, started = [], time.time()
    for seed in range(args.seeds):
        gaps.append(distillation_gap(model, tok, pairs, student_adapter=None, teacher_adapter=None,
                                     samples=args.samples, max_new_tokens=args.tokens, seed=seed * 1000))
        print(f"seed {seed}: gap {gaps[-1]:.4f}")
    rel = [abs(a - b) / max(a, b) for a, b in itertools.combinations(gaps, 2)]
    mean = statistics.mean(gaps)
    text = f"""# Gate margin: seed-to-seed spread of the held-out gap

Machine: {platform.machine()}, {os.cpu_count()} CPUs ({args.threads} torch threads), {platform.python_version()};
date {date.today()}; `python bench/bench_gate_margin.py --seeds {args.seeds} --pairs {args.pairs} --samples \
{args.samples} --tokens {args.tokens}` ({time.time() - started:.0f} s).

Model: SmolLM2-135M-Instruct (base, no adapter), {args.pairs} held-out pairs with one repository context,
{args.samples} samples per pair, {args.tokens} new tokens: the gate's default measurement. Only the sampling
seed changes between rows, so any difference is measurement noise.

| seed | gap (nats/token) |
|---|---|
""" + "".join(f"| {s} | {g:.4f} |\n" for s, g in enumerate(gaps)) + f"""
Mean {mean:.4f}, standard deviation {statistics.pstdev(gaps) / mean:.1%} of the mean; relative difference
between two seeds: median {statistics.median(rel):.1%}, max {max(rel):.1%}.

This noise is why the gap no longer decides promotion (learning/gate.py): a candidate whose samples
differ from its parent's can land this far from it by chance. The gate now compares what the adapters
write on held-out code, teacher-forced on the same lines (deterministic; verdicts over sampling seeds: docs/benchmarks/sleep.md);
the gap is recorded as a secondary number.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
