"""The promotion gate: a new adapter replaces the previous one only if it is measurably better.

On held-out episodes (never trained on), both adapters are scored against the same teacher —
the PREVIOUS adapter (or the base model) reading the experience context. The distillation gap is
the mean per-token KL from the student (adapter, no context) to that teacher, on the student's
own samples: how much of what the context teaches the adapter already does without it.
The candidate must close a clear share of that gap beyond what the previous adapter did, and its
drift (KL to the base model on general coding prompts, no context) must stay within a budget.

Relative margin: 10% by default. The candidate's gap must be below (1 - 0.10) * prev_gap, not
merely below it. An adapter that learned nothing useful lands within noise of its parent, on
either side, so "any decrease" promotes it about half the time. Measured (docs/sleep.md): on a
tiny model that reads two context-dependent rules, an adapter trained by OPSD on SHUFFLED contexts
(each prompt family with the other family's rule, which that model ignores) moved the held-out
gap by -3.6%..+0.05% over 5 training seeds (the plain rule promoted it for one seed), while
training on the genuine contexts closed 94-97% of it; on the random tiny model an adapter trained
on swapped contexts came out 5.4% below its parent against 35% for genuine training. 10% sits
about twice above the largest useless gain seen and far below the genuine ones. The margin is
relative because gaps scale with the model and the context (1e-4 nats/token on the random tiny
model, 0.2+ on one that reads its context); `min_improvement` adds an absolute floor (nats/token).
It is no guarantee against sampling noise between DISSIMILAR models: on SmolLM2 with 6 held-out
pairs the same model's gap varies by ~11% (std) across sampling seeds (docs/benchmarks/gate_margin.md).
Override with `GateConfig(min_relative_improvement=..., min_improvement=...)`.

Drift budget: 0.5 nats/token by default. A LoRA that only absorbed repository conventions moves
a 135M model's general-prompt distribution by ~0.01–0.2 nats/token in our runs; values above
0.5 mean it rewrote its general behaviour (forgetting), which no repository convention justifies.
Override with `GateConfig(drift_budget=...)` or `learnagent sleep --drift-budget`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_DRIFT_BUDGET = 0.5  # nats per token
DEFAULT_MIN_RELATIVE_IMPROVEMENT = 0.10  # share of the previous gap the candidate must close


@dataclass
class GateConfig:
    drift_budget: float = DEFAULT_DRIFT_BUDGET
    min_relative_improvement: float = DEFAULT_MIN_RELATIVE_IMPROVEMENT  # gap < (1 - r) * prev_gap
    min_improvement: float = 0.0  # absolute floor, nats/token: gap < prev_gap - min_improvement too
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
    required_gap: float = math.nan  # the gap the candidate had to stay below
    improvement: float | None = None  # 1 - gap / prev_gap: the share of the previous gap it closed

    def as_metrics(self) -> dict:
        return asdict(self)


def required_gap(prev_gap: float, *, min_relative_improvement: float = DEFAULT_MIN_RELATIVE_IMPROVEMENT,
                 min_improvement: float = 0.0) -> float:
    """The gap a candidate must stay below: both margins, whichever is larger, under prev_gap."""
    return prev_gap - max(min_relative_improvement * prev_gap, min_improvement)


def _requirement(min_relative_improvement: float, min_improvement: float) -> str:
    parts = ([f"{min_relative_improvement:.0%}"] if min_relative_improvement > 0 else []) + \
            ([f"{min_improvement:g} nats/token"] if min_improvement > 0 else [])
    return f"at least {' and '.join(parts)} below" if parts else "below"


def decide(gap: float, prev_gap: float, drift: float, *, drift_budget: float = DEFAULT_DRIFT_BUDGET,
           min_relative_improvement: float = DEFAULT_MIN_RELATIVE_IMPROVEMENT, min_improvement: float = 0.0,
           heldout: int = 1, previous: str | None = None) -> GateResult:
    """The rule itself, on numbers already measured (pure, so it is tested on hand-made values)."""
    if not 0.0 <= min_relative_improvement < 1.0:
        raise ValueError(f"min_relative_improvement must be in [0, 1), got {min_relative_improvement}")
    against = previous or "the base model"
    needed = required_gap(prev_gap, min_relative_improvement=min_relative_improvement,
                          min_improvement=min_improvement)
    closed = 1.0 - gap / prev_gap if prev_gap > 0 and math.isfinite(gap) else None
    common = dict(gap=gap, prev_gap=prev_gap, drift=drift, drift_budget=drift_budget, heldout=heldout,
                  required_gap=needed, improvement=closed)
    if heldout <= 0:
        return GateResult(False, "no held-out episodes to check it on", **common)
    if any(not math.isfinite(v) for v in (gap, prev_gap, drift)):
        return GateResult(False, "a gate metric is not a finite number (training diverged?)", **common)
    if drift > drift_budget:
        return GateResult(False, f"drift {drift:.3f} nats/token exceeds the budget {drift_budget:.3f}", **common)
    requirement = _requirement(min_relative_improvement, min_improvement)
    if not gap < needed:
        extra = "" if requirement == "below" else f" (needs < {needed:.4f})"
        return GateResult(False, f"held-out gap {gap:.4f} is not {requirement} {against}'s {prev_gap:.4f}"
                                 f"{extra}", **common)
    share = f"{closed:.0%} closed, " if closed is not None else ""
    return GateResult(True, f"held-out gap {gap:.4f} < {against}'s {prev_gap:.4f} ({share}needs < {needed:.4f}); "
                            f"drift {drift:.3f} within {drift_budget:.3f}", **common)


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
                  min_relative_improvement=cfg.min_relative_improvement, min_improvement=cfg.min_improvement,
                  heldout=m["heldout"], previous=previous)
