"""`learnagent eval`: how much of what the context teaches does the adapter do without it?

Three variants on the same probes: `base` (no adapter, no context), `context` (base reading the
probe's context: the ceiling) and `adapter` (base + adapter, no context). For each:
- adherence: share of sampled completions matching the probe's `expect` regex;
- gap: mean per-token KL to the base+context teacher on the variant's own samples (the
  ceiling's gap is 0 by definition: it IS the teacher);
- drift: KL to the base model on general prompts (0 for base and for base+context, which
  share the base weights): chat questions for chat probes, starts of unrelated code for text ones.
Probes come in two forms (`mode`): "chat" (default), the prompt is one user message and the
context a system message before it; "text", the prompt is raw text the model continues, and the
ceiling reads `context + "\n\n" + prompt` (rollout.encode). Small models read their context
best as raw text.
Internalization ratio = (adapter − base) / (context − base), for adherence and for the gap:
1 means the adapter does without the context what the context does, 0 means nothing learnt.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.errors import UsageError

VARIANTS = ("base", "context", "adapter")


MODES = ("chat", "text")


@dataclass
class Probe:
    id: str
    prompt: list[dict] | str  # chat messages (mode "chat": a file's string is one user message) or raw text
    context: str
    expect: str | None = None  # regex; None: adherence is not measured for this probe
    _regex: re.Pattern | None = field(default=None, repr=False, compare=False)

    @property
    def mode(self) -> str:
        """"text": the prompt is raw text the model continues, after `context + "\n\n"` in the
        ceiling's view; "chat": one user message after the context as a system message."""
        return "text" if isinstance(self.prompt, str) else "chat"

    def matches(self, text: str) -> bool:
        if self.expect is None:
            return False
        if self._regex is None:
            self._regex = re.compile(self.expect, re.MULTILINE)
        return self._regex.search(text) is not None


def load_probes(path: Path) -> list[Probe]:
    """Read a JSON-lines probe file; a bad line raises a one-line error naming it."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read probe file {path}: {exc.strerror or exc}") from None
    probes, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{where}: expected a JSON object with id, prompt, context, expect")
        for key in ("id", "prompt", "context"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise UsageError(f"{where}: '{key}' must be a non-empty string")
        expect = data.get("expect")
        if expect is not None:
            if not isinstance(expect, str):
                raise UsageError(f"{where}: 'expect' must be a regular expression string")
            try:
                re.compile(expect)
            except re.error as exc:
                raise UsageError(f"{where}: 'expect' is not a valid regular expression ({exc})") from None
        mode = data.get("mode", "chat")
        if mode not in MODES:
            raise UsageError(f"{where}: 'mode' must be \"chat\" or \"text\", not {json.dumps(mode)}")
        if data["id"] in seen:
            raise UsageError(f"{where}: duplicate probe id '{data['id']}'")
        seen.add(data["id"])
        prompt = data["prompt"] if mode == "text" else [{"role": "user", "content": data["prompt"]}]
        probes.append(Probe(data["id"], prompt, data["context"], expect))
    if not probes:
        raise UsageError(f"{path}: no probes (expected JSON lines with id, prompt, context, expect)")
    return probes


def probes_from_pairs(pairs) -> list[Probe]:
    """Held-out episodes as probes: no regex, so only the gap and drift are measured."""
    return [Probe(str(p.episode_id), p.prompt if isinstance(p.prompt, str) else list(p.prompt), p.context, None)
            for p in pairs if p.context]


def drift_prompts_for(probes: list[Probe]) -> list:
    """General prompts in the forms the probes use: chat questions, and raw starts of unrelated code."""
    from learnagent.learning.behaviour import GENERAL_CODE_STARTS
    from learnagent.learning.rollout import GENERAL_PROMPTS

    modes = {p.mode for p in probes}
    return (list(GENERAL_PROMPTS) if "chat" in modes else []) + (list(GENERAL_CODE_STARTS) if "text" in modes else [])


def internalization(base: float | None, ceiling: float | None, adapter: float | None) -> float | None:
    """(adapter − base) / (ceiling − base); None when a value is missing or the context changes nothing."""
    if base is None or ceiling is None or adapter is None:
        return None
    if any(isinstance(v, float) and math.isnan(v) for v in (base, ceiling, adapter)):
        return None
    span = ceiling - base
    if abs(span) < 1e-9:
        return None
    return (adapter - base) / span


def adherence(hits: list[list[bool]]) -> float | None:
    """Share of matching completions over all probes that have a regex (None: no regex anywhere)."""
    flat = [h for per_probe in hits for h in per_probe]
    return sum(flat) / len(flat) if flat else None


def summarize(variants: dict[str, dict]) -> dict:
    """Internalization ratios from the variants' metrics."""
    base, ceiling, adapter = (variants.get(v, {}) for v in VARIANTS)
    return {metric: internalization(base.get(metric), ceiling.get(metric), adapter.get(metric))
            for metric in ("adherence", "gap")}


def evaluate(model, tokenizer, probes: list[Probe], *, adapter: str | None, samples: int = 4,
             max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0, drift_prompts=None) -> dict:
    """Metrics of every variant on `probes` (adapter variant only when `adapter` names a loaded one)."""
    from learnagent.learning import rollout

    if samples < 1:
        raise UsageError("--samples must be at least 1")
    names = ["base", "context"] + (["adapter"] if adapter else [])
    per_probe = [{"id": p.id, "adherence": {}} for p in probes]
    variants: dict[str, dict] = {}
    for variant in names:
        student = adapter if variant == "adapter" else None
        hits, kl_sum, tokens = [], 0.0, 0
        for i, probe in enumerate(probes):
            if probe.expect is None and variant == "context":
                hits.append([])  # nothing to count, and the ceiling's gap is 0 by definition
                continue
            ids = rollout.encode(tokenizer, probe.prompt, probe.context if variant == "context" else None)
            with rollout.adapter_context(model, student):
                outs = rollout.sample(model, tokenizer, ids, samples, max_new_tokens, temperature, seed=seed + i)
            if probe.expect is None:
                hits.append([])
            else:
                hits.append([probe.matches(tokenizer.decode(o, skip_special_tokens=True)) for o in outs])
                per_probe[i]["adherence"][variant] = sum(hits[-1]) / len(hits[-1])
            if variant != "context":  # the gap on these same samples (as rollout.distillation_gap draws them)
                terms = rollout.gap_terms(model, ids, rollout.encode(tokenizer, probe.prompt, probe.context), outs,
                                          student_adapter=student, teacher_adapter=None)
                kl_sum, tokens = kl_sum + terms[0], tokens + terms[1]
        gap = 0.0 if variant == "context" else kl_sum / max(tokens, 1)  # the teacher scored against itself: 0
        if variant == "adapter":
            drift = rollout.drift(model, tokenizer, drift_prompts or drift_prompts_for(probes), adapter=adapter,
                                  seed=seed)
        else:
            drift = 0.0
        variants[variant] = {"adherence": adherence(hits), "gap": float(gap), "drift": float(drift)}
    return {"adapter": adapter, "probes": len(probes), "samples": samples, "max_new_tokens": max_new_tokens,
            "variants": variants, "internalization": summarize(variants), "per_probe": per_probe}
