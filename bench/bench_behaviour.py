"""How long the held-out code measure takes, and whether its exact match is what greedy decoding writes.

On SmolLM2-135M, for each repository (the test convention repository, and a real one: this checkout
by default), `learning/behaviour.py` scores the held-out code for base, base + retrieved context and
base + a LoRA adapter (a fresh one: the cost does not depend on what it learnt), as `learnagent eval`
does at its defaults (12,000 held-out tokens at most). Then, on the convention repository, every
measured line's teacher-forced exact match is checked against real greedy decoding from the line's
start (rollout.sample, temperature 0). Writes docs/benchmarks/behaviour_measure.md.

    python bench/bench_behaviour.py [--threads 2] [--repo PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # code_repo
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def greedy_agreement(model, tok, corpus, scores) -> tuple[int, int, int]:
    """(lines agreeing, lines, lines greedy writes exactly) over the base variant's lines."""
    import torch

    from learnagent.learning import behaviour
    from learnagent.learning.rollout import sample

    by_line = {(s.doc, s.line): s.exact for s in scores}
    agree = n = hits = 0
    for d in behaviour.prepare(tok, corpus.heldout):
        for _offset, number, first, end in d.lines:
            written = tok.decode(sample(model, tok, torch.tensor([d.ids[:first]]), 1, 2 * (end - first) + 4,
                                        temperature=0)[0])
            true = tok.decode(d.ids[first:end])
            greedy = written.split("\n", 1)[0] == true.split("\n", 1)[0] and "\n" in written
            agree, n, hits = agree + (greedy == by_line[(d.doc.key, number)]), n + 1, hits + greedy
    return agree, n, hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repo", default=str(ROOT))
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/behaviour_measure.md"))
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from code_repo import make_code_repo
    from learnagent.core.modelhub import installed_default_path
    from learnagent.learning import behaviour
    from learnagent.learning.code_pairs import mine_code
    from learnagent.runtime.loading import load_with_adapters

    path = installed_default_path()
    if path is None:
        raise SystemExit("SmolLM2-135M is not installed (run `learnagent model install`)")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-behaviour-"))
    adapter = tmp / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(path), LoraConfig(r=16, lora_alpha=32,
                                                                          target_modules="all-linear")).save_pretrained(adapter)
    model, tok = load_with_adapters(path, {"adapter": adapter})
    rows, agreement = [], None
    for label, root in (("tests/code_repo.py (convention repository)", make_code_repo(tmp / "repo")),
                        (f"{Path(args.repo).name} (this checkout)" if Path(args.repo) == ROOT else args.repo,
                         Path(args.repo))):
        t = time.time()
        corpus = mine_code(root)
        mine_s = time.time() - t
        cfg = behaviour.MeasureConfig()
        prepared = behaviour.prepare(tok, corpus.heldout, cfg)
        timings, scores = {}, {}
        for variant in (behaviour.Variant("base"), behaviour.Variant("context", context=True),
                        behaviour.Variant("adapter", "adapter")):
            t = time.time()
            scores.update(behaviour.score(model, tok, corpus, corpus.heldout, [variant], config=cfg))
            timings[variant.name] = time.time() - t
        base, ctx = behaviour.aggregate(scores["base"]), behaviour.aggregate(scores["context"])
        rows.append(f"| {label} | {len(corpus.files)} / {len(corpus.heldout_files)} | {len(prepared)} | "
                    f"{base['lines']} | {base['tokens']} | {mine_s:.1f} | {timings['base']:.0f} | "
                    f"{timings['context']:.0f} | {timings['adapter']:.0f} | {sum(timings.values()) / 60:.1f} | "
                    f"{base['nll']:.3f} / {base['exact']:.1%} | {ctx['nll']:.3f} / {ctx['exact']:.1%} |")
        print(rows[-1], flush=True)
        if agreement is None:
            agreement = greedy_agreement(model, tok, corpus, scores["base"])
            print("agreement", agreement, flush=True)
    load = os.getloadavg()
    agree, n, hits = agreement
    text = f"""# Held-out code measure: cost and fidelity (SmolLM2-135M)

`python bench/bench_behaviour.py --threads {args.threads}`, {date.today()}, {platform.machine()} CPU,
{args.threads} torch thread(s); load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (the
machine is shared with other engineers' runs: times are upper bounds of a quiet machine's).

What `learnagent eval` (and the gate) run: every line of the held-out documents scored teacher-forced,
one pass per document and variant (KV cache carried across 1024-token chunks, short documents batched,
the conventions block encoded once per variant), at most 12,000 held-out tokens (a stable subset).
The adapter is a fresh LoRA r16 on all linear layers (its cost does not depend on what it learnt).

| repository | code files / held out | documents | lines | tokens | mine (s) | base (s) | base + context (s) | adapter (s) | total (min) | base NLL / exact | base + context NLL / exact |
|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Exact match read off the teacher-forced pass against real greedy decoding from each line's start
(convention repository, base model): **{agree}/{n} lines agree** ({hits} lines greedy writes exactly).
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
