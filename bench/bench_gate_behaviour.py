"""Does the behavioural gate tell adapters that learned the repository from ones that did not? (SmolLM2-135M)

On the test convention repository (tests/code_repo.py: 12 modules in one house style, history
imported), adapters are trained for real (transformers + peft LoRA r16, CPU) and each is compared
with the base model on the held-out code, as `learning/gate.py` does:

- sft-N:   SFT on the repository's code-continuation pairs (code_pairs.to_pairs), N steps: genuine;
- opsd-N:  on-policy OPSD (train_common.ON_POLICY, sleep's objective before issue 9) with the retrieved
           contexts, N steps;
- opsd-shuffled-N: the same with every pair's context taken from another pair (nothing to learn);
- zero:    a fresh LoRA (B = 0): exactly the base model;
- noise:   a LoRA with random B (moved weights, nothing learnt).

For each: the paired comparison on held-out lines (NLL gain and its bootstrap lower bound, exact
match won/lost, documents better) and, for seeds 0..S-1, the sampled chat drift; the verdict per seed.
The code measure samples nothing, so only the drift can move a verdict between seeds.

    python bench/bench_gate_behaviour.py [--seeds 5] [--threads 1] [--out docs/benchmarks/gate_behaviour.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # code_repo: the convention repository the tests use
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def train_adapters(model_path: str, corpus, out: Path, steps: int, opsd_steps: int) -> dict[str, Path]:
    """Train (or reuse, when `out/NAME` holds a finished adapter: the repository is rebuilt identically)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from learnagent.learning.code_pairs import to_pairs
    from learnagent.learning.opsd import train_opsd
    from learnagent.learning.pairs import Pair
    from learnagent.learning.rollout import GENERAL_PROMPTS
    from learnagent.learning.sft import train_sft
    from learnagent.learning.train_common import ON_POLICY, TrainConfig

    pairs = to_pairs(corpus.samples(per_doc=6, target_lines=8))
    shuffled = [Pair(p.episode_id, p.prompt, pairs[(i + len(pairs) // 2) % len(pairs)].context, p.target)
                for i, p in enumerate(pairs)]
    common = dict(lr=5e-4, rank=16, low_priority=False, checkpoint_every=0, seed=0)
    folders = {}
    for name, fn, data, n in (("sft-3", train_sft, pairs, 3), (f"sft-{steps}", train_sft, pairs, steps),
                              (f"opsd-{opsd_steps}", train_opsd, pairs, opsd_steps),
                              (f"opsd-shuffled-{opsd_steps}", train_opsd, shuffled, opsd_steps)):
        folders[name] = out / name
        if (out / name / "adapter_config.json").is_file():
            print(f"reusing {name}", flush=True)
            continue
        t = time.time()
        # opsd rows: the on-policy objective (the student's own samples); today's default reads the real
        # continuation, which would learn the code whatever the (shuffled) context says
        cfg = TrainConfig(steps=n, samples_per_prompt=2, max_new_tokens=24, **common,
                          **(ON_POLICY if fn is train_opsd else {}))
        fn(model_path, data, GENERAL_PROMPTS, prev_adapter=None, out_dir=out / name, config=cfg, progress=False)
        print(f"trained {name}: {n} steps in {time.time() - t:.0f} s", flush=True)
    for name, scale in (("zero", None), ("noise", 0.02)):
        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path),
                                    LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        if scale:
            gen = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for n_, p in peft_model.named_parameters():
                    if "lora_B" in n_:
                        p.copy_(torch.randn(p.shape, generator=gen) * scale)
        peft_model.save_pretrained(out / name)
        folders[name] = out / name
    return folders


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--opsd-steps", type=int, default=6)
    ap.add_argument("--adapters", default=None, help="folder to train adapters into, or reuse them from")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/gate_behaviour.md"))
    args = ap.parse_args()

    import torch

    from code_repo import make_code_repo
    from learnagent.core.modelhub import installed_default_path
    from learnagent.learning import behaviour
    from learnagent.runtime.loading import load_with_adapters
    from learnagent.learning.gate import GateConfig, compare, decide
    from learnagent.learning.rollout import GENERAL_PROMPTS, drift
    from learnagent.learning.code_pairs import mine_code

    path = installed_default_path()
    if path is None:
        raise SystemExit("SmolLM2-135M is not installed (run `learnagent model install`)")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    root = make_code_repo(tmp / "repo")
    corpus = mine_code(root, heldout_fraction=0.3)
    started = time.time()
    folders = train_adapters(str(path), corpus, Path(args.adapters) if args.adapters else tmp / "adapters",
                             args.steps, args.opsd_steps)
    train_s = time.time() - started
    model, tok = load_with_adapters(path, folders)
    t = time.time()
    variants = [behaviour.Variant("base"), behaviour.Variant("context", context=True)] + \
        [behaviour.Variant(name, name) for name in folders]
    scores = behaviour.score(model, tok, corpus, corpus.heldout, variants)
    measure_s = time.time() - t
    cfg = GateConfig()
    rows, raw = [], {}
    for name in folders:
        c = compare(scores["base"], scores[name], confidence=cfg.confidence)
        code_drift = behaviour.code_drift(model, tok, name)
        drifts = [drift(model, tok, GENERAL_PROMPTS, adapter=name, max_new_tokens=cfg.drift_max_new_tokens, seed=s)
                  for s in range(args.seeds)]
        verdicts = [decide(c, d, code_drift, drift_budget=cfg.drift_budget, min_nll_gain=cfg.min_nll_gain)
                    for d in drifts]
        raw[name] = {"comparison": c.__dict__, "code_drift": code_drift, "drifts": drifts,
                     "verdicts": [v.accepted for v in verdicts], "reasons": [v.reason for v in verdicts]}
        print(name, json.dumps(raw[name]), flush=True)
        rows.append(f"| {name} | {c.nll:.3f} | {c.gain:+.1%} | {c.gain_low:+.1%} | {c.lines_better}/{c.lines_worse} | "
                    f"{c.docs_better}/{c.documents} | {c.exact:.1%} ({c.exact_won}+/{c.exact_lost}-) | "
                    f"{min(drifts):.3f}-{max(drifts):.3f} | {code_drift:.3f} | "
                    f"{sum(v.accepted for v in verdicts)}/{len(verdicts)} |")
    base = behaviour.aggregate(scores["base"])
    ctx = behaviour.aggregate(scores["context"])
    load = os.getloadavg()
    text = f"""# Behavioural gate on SmolLM2-135M: who gets promoted

`python bench/bench_gate_behaviour.py --seeds {args.seeds} --steps {args.steps} --opsd-steps {args.opsd_steps}
--threads {args.threads}`,
{date.today()}, {platform.machine()} CPU, {args.threads} torch thread(s), load average {load[0]:.1f} at the end
(the machine is shared: times are not comparable across runs).

Repository: tests/code_repo.py (12 modules in one house style, history imported), held-out fraction
0.3 by file: {len(corpus.heldout)} held-out documents, {base['lines']} lines, {base['tokens']} tokens.
Base: NLL {base['nll']:.3f} nats/token, next-line exact {base['exact']:.1%}; base + retrieved context
(ceiling): {ctx['nll']:.3f}, {ctx['exact']:.1%}.

Adapters: LoRA r16 lr 5e-4 on `code_pairs.to_pairs(corpus.samples(per_doc=6, target_lines=8))`
({train_s:.0f} s of training in this run; adapters reused from an earlier run count 0); the gate compares each with the base model (the first night).
Scoring all {len(variants)} variants on the held-out code took {measure_s:.0f} s (one pass per document each).

| adapter | NLL | gain | gain, bootstrap 5% | lines better/worse | docs better | next-line exact (won/lost) | chat drift over seeds | code drift | promoted (seeds) |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Gate: drift budget {cfg.drift_budget}, NLL gain ≥ {cfg.min_nll_gain:.0%}, bootstrap lower bound > 0
(confidence {cfg.confidence}), exact match not below the previous adapter's.

Raw numbers:

```json
{json.dumps(raw, indent=1)}
```
"""
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
