"""The promotion gate: a new adapter replaces the previous one only if it writes held-out code better.

What counts is behaviour on code no adapter trained on (learning/behaviour.py): for every line of
the held-out files (and the lines held-out episodes wrote), the NLL of what the user actually
wrote given the code before it, and whether greedy decoding writes that line. Candidate and
previous adapter (the base model on the first night) are scored on the SAME lines, no context:
a paired comparison, and deterministic (teacher forcing, no sampling), so a verdict does not
depend on a sampling seed.

Rule (`decide`), in order:
1. there is held-out code to check on, and every number is finite;
2. drift within the budget: KL to the base model on general chat prompts (sampled, as before) and
   on code that belongs to no repository (`code_drift`, teacher-forced);
3. the held-out code NLL per token is at least `min_nll_gain` (relative) below the previous one;
4. the gain holds across the held-out lines, not on a few: the lower end of a bootstrap interval
   over lines (`confidence`) of the relative gain is above 0;
5. it writes at least as many held-out lines exactly as the previous adapter (greedy next line).
The distillation gap on held-out episodes (KL to the context-reading teacher) is still measured and
recorded as a secondary number; it no longer decides (issue 9: an adapter closed 41% of it on two
prompts and wrote no convention on 48 probes, exactly like the base model).

Margins measured in docs/sleep.md ("Gate"): see there for the numbers behind the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

DEFAULT_DRIFT_BUDGET = 0.5  # nats per token
DEFAULT_MIN_NLL_GAIN = 0.02  # the candidate's held-out code NLL must be 2% below the previous one's
DEFAULT_CONFIDENCE = 0.95  # one-sided bootstrap interval over held-out lines
BOOTSTRAP_ROUNDS = 1000


@dataclass
class GateConfig:
    drift_budget: float = DEFAULT_DRIFT_BUDGET
    min_nll_gain: float = DEFAULT_MIN_NLL_GAIN  # relative: 1 - nll / prev_nll must reach it
    confidence: float = DEFAULT_CONFIDENCE  # of the bootstrap lower bound that must stay above 0
    samples: int = 2  # completions per held-out prompt for the (secondary) distillation gap
    max_new_tokens: int = 48
    drift_max_new_tokens: int = 32
    drift_prompts: int | None = None  # how many of rollout.GENERAL_PROMPTS (None: all 12)
    seed: int = 0  # sampling seed of the gap and the chat drift (the code measure samples nothing)
    code_tokens: int = 12_000  # held-out code tokens measured (behaviour.MeasureConfig.max_tokens)
    with_context: bool = True  # also measure base + retrieved context (the ceiling, for the ratios)


@dataclass
class CodeComparison:
    """Candidate vs previous on the same held-out lines (from behaviour.score)."""

    lines: int
    tokens: int
    documents: int
    nll: float  # candidate, nats per token
    prev_nll: float
    exact: float  # share of lines greedy decoding writes exactly
    prev_exact: float
    gain: float  # 1 - nll / prev_nll
    gain_low: float  # lower end of the bootstrap interval of `gain` over lines
    lines_better: int  # lines whose NLL went down (by more than 1e-3 nats)
    lines_worse: int
    exact_won: int  # lines the candidate writes and the previous did not
    exact_lost: int
    docs_better: int  # documents whose NLL per token went down


@dataclass
class GateResult:
    accepted: bool
    reason: str
    drift: float  # the candidate's KL to the base model on general chat prompts (sampled)
    drift_budget: float
    code_drift: float  # ... on code that belongs to no repository (teacher-forced)
    comparison: CodeComparison | None  # on the held-out code; None when there was none
    gap: float | None = None  # secondary: the candidate's distillation gap on held-out episodes
    prev_gap: float | None = None  # ... and the previous adapter's (or the base model's)
    heldout: int = 0  # held-out episodes the gap was measured on
    code: dict = field(default_factory=dict)  # behaviour report: base, context, previous, adapter

    def as_metrics(self) -> dict:
        return asdict(self)


def compare(prev, cand, *, confidence: float = DEFAULT_CONFIDENCE, rounds: int = BOOTSTRAP_ROUNDS,
            seed: int = 0) -> CodeComparison:
    """Paired comparison of two variants' LineScores on the same lines (same order)."""
    import torch

    if len(prev) != len(cand) or any((p.doc, p.line) != (c.doc, c.line) for p, c in zip(prev, cand)):
        raise ValueError("the two variants were not scored on the same lines")
    n = len(prev)
    p_nll = torch.tensor([s.nll for s in prev], dtype=torch.float64)
    c_nll = torch.tensor([s.nll for s in cand], dtype=torch.float64)
    tokens = sum(s.tokens for s in prev)
    gain = 1.0 - float(c_nll.sum() / p_nll.sum()) if n and float(p_nll.sum()) > 0 else math.nan
    gain_low = math.nan
    if n and float(p_nll.sum()) > 0:
        # lines resampled with replacement; a fixed generator: the same lines give the same bound
        idx = torch.randint(0, n, (rounds, n), generator=torch.Generator().manual_seed(seed))
        gains = 1.0 - c_nll[idx].sum(1) / p_nll[idx].sum(1).clamp_min(1e-12)
        gain_low = float(torch.quantile(gains, 1.0 - confidence))
    docs: dict[str, list[float]] = {}
    for p, c in zip(prev, cand):
        d = docs.setdefault(p.doc, [0.0, 0.0])
        d[0], d[1] = d[0] + p.nll, d[1] + c.nll
    delta = p_nll - c_nll
    return CodeComparison(
        lines=n, tokens=tokens, documents=len(docs),
        nll=float(c_nll.sum()) / tokens if tokens else math.nan,
        prev_nll=float(p_nll.sum()) / tokens if tokens else math.nan,
        exact=sum(s.exact for s in cand) / n if n else math.nan,
        prev_exact=sum(s.exact for s in prev) / n if n else math.nan,
        gain=gain, gain_low=gain_low,
        lines_better=int((delta > 1e-3).sum()), lines_worse=int((delta < -1e-3).sum()),
        exact_won=sum(c.exact and not p.exact for p, c in zip(prev, cand)),
        exact_lost=sum(p.exact and not c.exact for p, c in zip(prev, cand)),
        docs_better=sum(c < p for p, c in docs.values()))


def decide(comparison: CodeComparison | None, drift: float, code_drift: float, *,
           drift_budget: float = DEFAULT_DRIFT_BUDGET, min_nll_gain: float = DEFAULT_MIN_NLL_GAIN,
           previous: str | None = None, **secondary) -> GateResult:
    """The rule itself, on numbers already measured (pure, so it is tested on hand-made values)."""
    against = previous or "the base model"
    common = dict(drift=drift, drift_budget=drift_budget, code_drift=code_drift, comparison=comparison) | secondary
    c = comparison
    if c is None or c.lines == 0:
        return GateResult(False, "no held-out code to check it on (the repository needs two committed code files)",
                          **common)
    if any(not math.isfinite(v) for v in (c.nll, c.prev_nll, c.gain, drift, code_drift)):
        return GateResult(False, "a gate metric is not a finite number (training diverged?)", **common)
    if drift > drift_budget:
        return GateResult(False, f"drift {drift:.3f} nats/token exceeds the budget {drift_budget:.3f}", **common)
    if code_drift > drift_budget:
        return GateResult(False, f"drift on unrelated code {code_drift:.3f} nats/token exceeds the budget "
                                 f"{drift_budget:.3f}", **common)
    where = f"on {c.lines} held-out lines of code"
    if c.gain < min_nll_gain:
        return GateResult(False, f"held-out code NLL {c.nll:.4f} is not {min_nll_gain:.0%} below {against}'s "
                                 f"{c.prev_nll:.4f} ({c.gain:+.1%}) {where}", **common)
    if not c.gain_low > 0:
        return GateResult(False, f"held-out code NLL {c.gain:+.1%} against {against}, but not on most lines "
                                 f"(bootstrap lower bound {c.gain_low:+.1%}; {c.lines_better} lines better, "
                                 f"{c.lines_worse} worse)", **common)
    if c.exact < c.prev_exact:
        return GateResult(False, f"it writes fewer held-out lines exactly than {against}: {c.exact:.1%} < "
                                 f"{c.prev_exact:.1%} ({c.exact_lost} lost, {c.exact_won} won)", **common)
    return GateResult(True, f"held-out code NLL {c.nll:.4f} < {against}'s {c.prev_nll:.4f} ({c.gain:.1%} lower, "
                            f"≥ {c.gain_low:.1%} on resampled lines), next-line exact {c.prev_exact:.1%} -> "
                            f"{c.exact:.1%} {where}; drift {drift:.3f} / {code_drift:.3f} within {drift_budget:g}",
                      **common)


def measure(model, tokenizer, heldout_pairs, code, *, candidate: str, previous: str | None,
            config: GateConfig | None = None, progress=None) -> dict:
    """Everything the rule reads. `model` is one PeftModel holding the adapters by name (`candidate`,
    and `previous` unless None: the base model); `code` is the repository's CodeCorpus (or None)."""
    from learnagent.learning import behaviour, rollout

    cfg = config or GateConfig()
    out: dict = {"comparison": None, "code": {}, "heldout": len(heldout_pairs)}
    if code is not None and code.heldout:
        variants = [behaviour.Variant("base")] + ([behaviour.Variant("context", context=True)]
                                                   if cfg.with_context else [])
        if previous:
            variants.append(behaviour.Variant("previous", previous))
        variants.append(behaviour.Variant("adapter", candidate))
        scores = behaviour.score(model, tokenizer, code, code.heldout, variants,
                                 config=behaviour.MeasureConfig(max_tokens=cfg.code_tokens), progress=progress)
        out["comparison"] = compare(scores["previous" if previous else "base"], scores["adapter"],
                                    confidence=cfg.confidence)
        report = behaviour.summarize(scores)
        report.code_drift = behaviour.code_drift(model, tokenizer, candidate)
        out["code"] = report.as_dict()
    out["code_drift"] = out["code"].get("code_drift") if out["code"] else behaviour.code_drift(model, tokenizer,
                                                                                              candidate)
    kwargs = dict(samples=cfg.samples, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    out["gap"] = out["prev_gap"] = None
    if heldout_pairs:
        out["gap"] = float(rollout.distillation_gap(model, tokenizer, heldout_pairs, student_adapter=candidate,
                                                    teacher_adapter=previous, **kwargs))
        out["prev_gap"] = float(rollout.distillation_gap(model, tokenizer, heldout_pairs, student_adapter=previous,
                                                         teacher_adapter=previous, **kwargs))
    general = rollout.GENERAL_PROMPTS[: cfg.drift_prompts]
    out["drift"] = float(rollout.drift(model, tokenizer, general, adapter=candidate,
                                       max_new_tokens=cfg.drift_max_new_tokens, seed=cfg.seed))
    return out


def run_gate(model, tokenizer, heldout_pairs, *, candidate: str, previous: str | None, code=None,
             config: GateConfig | None = None, progress=None) -> GateResult:
    cfg = config or GateConfig()
    m = measure(model, tokenizer, heldout_pairs, code, candidate=candidate, previous=previous, config=cfg,
                progress=progress)
    return decide(m["comparison"], m["drift"], m["code_drift"], drift_budget=cfg.drift_budget,
                  min_nll_gain=cfg.min_nll_gain, previous=previous, gap=m["gap"], prev_gap=m["prev_gap"],
                  heldout=m["heldout"], code=m["code"])
