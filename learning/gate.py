"""The promotion gate: a new adapter replaces the previous one only if it is measurably better.

On held-out episodes (never trained on), both adapters are scored against the same teacher —
the PREVIOUS adapter (or the base model) reading the experience context. The distillation gap is
the mean per-token KL from the student (adapter, no context) to that teacher, on the student's
own samples: how much of what the context teaches the adapter already does without it.
The candidate must close more of that gap than the previous adapter did, and its drift (KL to the
base model on general coding prompts, no context) must stay within a budget.

Drift budget: 0.5 nats/token by default. A LoRA that only absorbed repository conventions moves
a 135M model's general-prompt distribution by ~0.01–0.2 nats/token in our runs; values above
0.5 mean it rewrote its general behaviour (forgetting), which no repository convention justifies.
Override with `GateConfig(drift_budget=...)` or `learnagent sleep --drift-budget`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_DRIFT_BUDGET = 0.5  # nats per token


@dataclass
class GateConfig:
    drift_budget: float = DEFAULT_DRIFT_BUDGET
    min_improvement: float = 0.0  # the candidate's gap must be below prev_gap - min_improvement
    samples: int = 2  # completions per held-out prompt when measuring the gap
    max_new_tokens: int = 48
    drift_max_new_tokens: int = 32
    seed: int = 0


@dataclass
class GateResult:
    accepted: bool
    reason: str
    gap: float  # the candidate's distillation gap on held-out prompts
    prev_gap: float  # the previous adapter's (or the base model's) gap on the same prompts
    drift: float  # the candidate's KL to the base model on general prompts
    drift_budget: float
    heldout: int  # held-out prompts it was measured on

    def as_metrics(self) -> dict:
        return asdict(self)


def decide(gap: float, prev_gap: float, drift: float, *, drift_budget: float = DEFAULT_DRIFT_BUDGET,
           min_improvement: float = 0.0, heldout: int = 1, previous: str | None = None) -> GateResult:
    """The rule itself, on numbers already measured (pure, so it is tested on hand-made values)."""
    against = previous or "the base model"
    common = dict(gap=gap, prev_gap=prev_gap, drift=drift, drift_budget=drift_budget, heldout=heldout)
    if heldout <= 0:
        return GateResult(False, "no held-out episodes to check it on", **common)
    if any(not math.isfinite(v) for v in (gap, prev_gap, drift)):
        return GateResult(False, "a gate metric is not a finite number (training diverged?)", **common)
    if drift > drift_budget:
        return GateResult(False, f"drift {drift:.3f} nats/token exceeds the budget {drift_budget:.3f}", **common)
    if not gap < prev_gap - min_improvement:
        return GateResult(False, f"held-out gap {gap:.4f} is not below {against}'s {prev_gap:.4f}", **common)
    return GateResult(True, f"held-out gap {gap:.4f} < {against}'s {prev_gap:.4f}; drift {drift:.3f} "
                            f"within {drift_budget:.3f}", **common)


def measure(model, tokenizer, heldout_pairs, *, candidate: str, previous: str | None,
            config: GateConfig | None = None) -> dict:
    """Gap of the candidate and of the previous adapter against previous+context, and the candidate's drift.

    `model` is one PeftModel holding the adapters by name (`candidate`, and `previous` unless None,
    which means the base model); the base weights are shared by every variant.
    """
    from learnagent.learning import rollout

    cfg = config or GateConfig()
    if not heldout_pairs:
        return {"gap": math.nan, "prev_gap": math.nan, "drift": math.nan, "heldout": 0}
    kwargs = dict(samples=cfg.samples, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    gap = rollout.distillation_gap(model, tokenizer, heldout_pairs, student_adapter=candidate,
                                   teacher_adapter=previous, **kwargs)
    prev_gap = rollout.distillation_gap(model, tokenizer, heldout_pairs, student_adapter=previous,
                                        teacher_adapter=previous, **kwargs)
    drift = rollout.drift(model, tokenizer, rollout.GENERAL_PROMPTS, adapter=candidate,
                          max_new_tokens=cfg.drift_max_new_tokens, seed=cfg.seed)
    return {"gap": float(gap), "prev_gap": float(prev_gap), "drift": float(drift), "heldout": len(heldout_pairs)}


def run_gate(model, tokenizer, heldout_pairs, *, candidate: str, previous: str | None,
             config: GateConfig | None = None) -> GateResult:
    cfg = config or GateConfig()
    m = measure(model, tokenizer, heldout_pairs, candidate=candidate, previous=previous, config=cfg)
    return decide(m["gap"], m["prev_gap"], m["drift"], drift_budget=cfg.drift_budget,
                  min_improvement=cfg.min_improvement, heldout=m["heldout"], previous=previous)
