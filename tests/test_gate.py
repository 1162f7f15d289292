"""The promotion gate: the rule on hand-made numbers, and the real gate on a tiny model that reads its context.

`two_rule_model` fine-tunes the tiny random model so that its context matters: family-A tasks
follow RULE_A (`print('hello world')`) and family-B tasks RULE_B (`class Store:`) when their rule
is in the context; without it, or with the OTHER family's rule (irrelevant to that task), they
answer `def add(a, b):` three times in four and follow their own rule by chance once in four
(so on-policy samples sometimes hit the right answer, as a real model's do). OPSD on the genuine
pairs must then pass the gate against the base model, and OPSD on shuffled pairs (each family
with the other family's rule: useless context) must fail it.
"""

import math
import shutil

import pytest
import torch

from learnagent.learning.gate import (DEFAULT_DRIFT_BUDGET, DEFAULT_MIN_RELATIVE_IMPROVEMENT, GateConfig, decide,
                                      required_gap)


# ---------------------------------------------------------------- the rule on hand-made numbers

def test_accepts_a_gap_lower_by_the_margin_within_budget():
    r = decide(0.8, 1.0, 0.1, previous="v0001")
    assert r.accepted and "0.8000 < v0001's 1.0000 (20% closed, needs < 0.9000)" in r.reason
    assert r.as_metrics() == {"accepted": True, "reason": r.reason, "gap": 0.8, "prev_gap": 1.0, "drift": 0.1,
                              "drift_budget": DEFAULT_DRIFT_BUDGET, "heldout": 1, "required_gap": 0.9,
                              "improvement": pytest.approx(0.2)}
    assert DEFAULT_MIN_RELATIVE_IMPROVEMENT == 0.10
    assert GateConfig().min_relative_improvement == DEFAULT_MIN_RELATIVE_IMPROVEMENT


@pytest.mark.parametrize("gap, prev, drift, kwargs, why", [
    (1.0, 1.0, 0.1, {}, "is not at least 10% below the base model's 1.0000 (needs < 0.9000)"),  # equal
    (1.2, 1.0, 0.1, {}, "is not at least 10% below"),
    (0.95, 1.0, 0.1, {}, "is not at least 10% below"),  # lower, but within noise: the rule's point
    (0.9, 1.0, 0.1, {}, "needs < 0.9000"),  # exactly at the margin is not enough
    (0.5, 1.0, 0.6, {}, "drift 0.600 nats/token exceeds the budget 0.500"),
    (0.5, 1.0, 0.3, {"drift_budget": 0.2}, "exceeds the budget 0.200"),
    (0.7, 1.0, 0.1, {"min_relative_improvement": 0.5}, "is not at least 50% below"),
    (1.0, 1.0, 0.1, {"min_relative_improvement": 0.0}, "held-out gap 1.0000 is not below the base model's 1.0000"),
    (0.85, 1.0, 0.1, {"min_improvement": 0.2}, "is not at least 10% and 0.2 nats/token below"),
    (0.95, 1.0, 0.1, {"min_relative_improvement": 0.0, "min_improvement": 0.1}, "at least 0.1 nats/token below"),
    (0.0, 0.0, 0.1, {}, "not at least 10% below"),  # nothing left to close: nothing to promote
    (0.5, 1.0, 0.1, {"heldout": 0}, "no held-out episodes"),
    (math.nan, 1.0, 0.1, {}, "not a finite number"),
])
def test_rejects_with_the_reason(gap, prev, drift, kwargs, why):
    r = decide(gap, prev, drift, **kwargs)
    assert not r.accepted and why in r.reason


@pytest.mark.parametrize("gap, prev, kwargs", [
    (0.99, 1.0, {"min_relative_improvement": 0.0}),  # the plain rule: any decrease
    (0.94, 1.0, {"min_relative_improvement": 0.05}),
    (0.85, 1.0, {"min_improvement": 0.1}),  # 10% and 0.1 nats/token both ask for < 0.9
    (0.05, 0.1, {"min_improvement": 0.04}),  # the absolute floor is the larger here: < 0.06
])
def test_accepts_when_every_margin_is_met(gap, prev, kwargs):
    assert decide(gap, prev, 0.1, **kwargs).accepted


def test_required_gap_takes_the_larger_margin():
    assert required_gap(1.0) == pytest.approx(0.9)
    assert required_gap(1.0, min_relative_improvement=0.1, min_improvement=0.3) == pytest.approx(0.7)
    assert required_gap(0.01, min_relative_improvement=0.1, min_improvement=0.0) == pytest.approx(0.009)
    assert required_gap(2.0, min_relative_improvement=0.0, min_improvement=0.0) == 2.0
    with pytest.raises(ValueError, match="min_relative_improvement"):
        decide(0.5, 1.0, 0.1, min_relative_improvement=1.0)


# ---------------------------------------------------------------- the real gate on a model that reads its context

RULES = {"a": "Always print hello world.", "b": "Always start with class Store."}
ANSWERS = {"a": "print('hello world')", "b": "class Store:"}
DEFAULT = "def add(a, b):"
SYSTEM = {"role": "system", "content": "You are a coding agent."}
OTHER = {"a": "b", "b": "a"}


def task(family, i):
    text = f"Task: write def add{i}(a, b)" if family == "a" else f"Task: rename module{i}.py"
    return [SYSTEM, {"role": "user", "content": text}]


def pairs(indices, *, shuffled=False):
    from learnagent.learning.pairs import Pair

    return [Pair(f"{f}{i}", task(f, i), RULES[OTHER[f] if shuffled else f], None) for f in "ab" for i in indices]


TRAIN = range(6)  # the same prompts for both candidates; only their contexts differ
HELDOUT = range(100, 103)  # never seen by the fine-tune nor by OPSD
GATE = GateConfig(samples=2, max_new_tokens=10, drift_max_new_tokens=10, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _first_token_probs(model, tok, family, context):
    from learnagent.learning.rollout import encode

    with torch.no_grad():
        probs = model(input_ids=encode(tok, task(family, 200), context)).logits[0, -1].softmax(-1)
    return {name: float(probs[tok(text, add_special_tokens=False)["input_ids"][0]])
            for name, text in (("rule", ANSWERS[family]), ("default", DEFAULT))}


@pytest.fixture(scope="module")
def two_rule_model(tmp_path_factory):
    """A tiny model that follows RULE_A on family A and RULE_B on family B when that rule is in its context."""
    from learnagent.learning.rollout import encode
    from tiny_model import make_tiny_model, save_model_dir, teach

    model, tok = make_tiny_model()
    eos = [tok.eos_token_id]
    rows = []
    for i in range(16):
        for f in "ab":
            by_context = {RULES[f]: [ANSWERS[f]] * 2,  # the true rule: always (twice, so it is learnt fast)
                          None: [DEFAULT] * 3 + [ANSWERS[f]],  # no rule: by chance once in four
                          RULES[OTHER[f]]: [DEFAULT] * 3 + [ANSWERS[f]]}  # the other family's rule: irrelevant
            for context, answers in by_context.items():
                prompt = encode(tok, task(f, i), context)[0].tolist()
                rows += [(prompt, tok(a, add_special_tokens=False)["input_ids"] + eos) for a in answers]
    teach(model, tok, rows, steps=200, batch=16, lr=5e-3, shuffle_seed=0)
    model.eval()
    for f in "ab":  # it reads its context, and only its own family's rule
        own, none, other = (_first_token_probs(model, tok, f, c) for c in (RULES[f], None, RULES[OTHER[f]]))
        assert own["rule"] > 0.8, f"family {f} does not follow its rule in context: {own}"
        assert 0.05 < none["rule"] < 0.5 and 0.05 < other["rule"] < 0.5, (f, none, other)
    return save_model_dir(model, tok, tmp_path_factory.mktemp("tworule") / "model")


@pytest.fixture(scope="module")
def candidates(two_rule_model, tmp_path_factory):
    """Two adapters trained by the same OPSD run (seed, steps, prompts); only the contexts differ."""
    from learnagent.learning.opsd import train_opsd
    from learnagent.learning.rollout import GENERAL_PROMPTS
    from learnagent.learning.train_common import ON_POLICY, TrainConfig

    cfg = TrainConfig(steps=32, samples_per_prompt=2, max_new_tokens=10, lr=3e-3, rank=4, lambda_ret=0.2,
                      kl_clip=None, skip_first=0, checkpoint_every=0, low_priority=False, seed=0, **ON_POLICY)
    root = tmp_path_factory.mktemp("candidates")
    out = {}
    for name, shuffled in (("genuine", False), ("shuffled", True)):
        # retention on general prompts, as sleep does, keeps the drift of the genuine adapter in budget
        result = train_opsd(two_rule_model, pairs(TRAIN, shuffled=shuffled), GENERAL_PROMPTS, prev_adapter=None,
                            out_dir=root / name, config=cfg, progress=False)
        out[name] = result
    return out


def test_gate_accepts_genuine_contexts_and_rejects_shuffled_ones(two_rule_model, candidates):
    from learnagent.learning.evaluate import load_with_adapters
    from learnagent.learning.gate import measure

    genuine, shuffled = candidates["genuine"], candidates["shuffled"]
    assert genuine.kl_last < 0.5 * genuine.kl_first  # the genuine teacher had something to teach
    assert shuffled.kl_first < 0.1 * genuine.kl_first  # an irrelevant rule leaves the teacher ~ the student
    model, tok = load_with_adapters(two_rule_model, {"genuine": genuine.adapter_dir,
                                                     "shuffled": shuffled.adapter_dir})
    held = pairs(HELDOUT)  # held-out prompts of both families, with their TRUE contexts
    results = {}
    for name in ("genuine", "shuffled"):
        m = measure(model, tok, held, candidate=name, previous=None, config=GATE)
        results[name] = decide(m["gap"], m["prev_gap"], m["drift"], drift_budget=GATE.drift_budget,
                               min_relative_improvement=GATE.min_relative_improvement, heldout=m["heldout"])
        print(f"{name}: gap {m['gap']:.5f} base {m['prev_gap']:.5f} drift {m['drift']:.5f} "
              f"-> {results[name].reason}")
    good, bad = results["genuine"], results["shuffled"]
    assert good.prev_gap == bad.prev_gap > 0.1  # the same base measurement: same prompts, same seeds
    assert good.accepted, good.reason
    assert good.improvement > 0.5 and good.drift < GATE.drift_budget
    assert not bad.accepted, bad.reason
    assert "is not at least 10% below the base model's" in bad.reason
    # it learned nothing measurable: its gap stays within noise of the base model's, on either side
    assert abs(bad.improvement) < 0.05, bad.improvement


def test_sleep_registry_keeps_the_promoted_adapter_over_rejected_candidates(two_rule_model, candidates, git_repo):
    """The gate's verdicts drive the registry: genuine promoted; shuffled (against the base) and a
    random-noise LoRA (against the promoted adapter, the teacher now) rejected; genuine stays promoted."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from learnagent.learning.evaluate import load_with_adapters
    from learnagent.learning.gate import run_gate
    from learnagent.learning.registry import Registry, promoted_adapter
    from learnagent.store.episodes import Store

    with Store() as store:
        reg = Registry(store, git_repo)
        v1 = reg.reserve(parent=None, method="opsd", base_model="tworule")
        shutil.copytree(candidates["genuine"].adapter_dir, reg.folder(v1), dirs_exist_ok=True)
        v2 = reg.reserve(parent=None, method="opsd", base_model="tworule")
        shutil.copytree(candidates["shuffled"].adapter_dir, reg.folder(v2), dirs_exist_ok=True)
        v3 = reg.reserve(parent=v1, method="opsd", base_model="tworule")
        noise = get_peft_model(AutoModelForCausalLM.from_pretrained(two_rule_model),
                               LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        with torch.no_grad():
            gen = torch.Generator().manual_seed(3)
            for n, p in noise.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        noise.save_pretrained(reg.folder(v3))

        model, tok = load_with_adapters(two_rule_model, {v: reg.folder(v) for v in (v1, v2, v3)})
        held = pairs(HELDOUT)
        verdicts = {v1: run_gate(model, tok, held, candidate=v1, previous=None, config=GATE),
                    v2: run_gate(model, tok, held, candidate=v2, previous=None, config=GATE)}
        assert verdicts[v1].accepted and not verdicts[v2].accepted
        reg.finish(v1, metrics=verdicts[v1].as_metrics(), episode_ids=[p.episode_id for p in pairs(TRAIN)],
                   config={})
        reg.promote(v1, verdicts[v1].reason)
        reg.finish(v2, metrics=verdicts[v2].as_metrics(), episode_ids=[], config={})
        reg.reject(v2, verdicts[v2].reason)

        verdicts[v3] = run_gate(model, tok, held, candidate=v3, previous=v1, config=GATE)
        assert not verdicts[v3].accepted, verdicts[v3].reason
        reg.finish(v3, metrics=verdicts[v3].as_metrics(), episode_ids=[], config={})
        reg.reject(v3, verdicts[v3].reason)

        assert promoted_adapter(git_repo)[0] == v1
        for v in (v2, v3):
            row = reg.get(v)
            assert row["status"] == "rejected" and row["reason"] == verdicts[v].reason
        assert reg.get(v1)["metrics"]["improvement"] == verdicts[v1].improvement
