"""The promotion gate: the rule on hand-made numbers, and real measurements on the tiny model."""

import math

import pytest

from learnagent.learning.gate import DEFAULT_DRIFT_BUDGET, decide


def test_accepts_a_lower_gap_within_budget():
    r = decide(0.8, 1.0, 0.1, previous="v0001")
    assert r.accepted and "0.8000 < v0001's 1.0000" in r.reason
    assert r.as_metrics() == {"accepted": True, "reason": r.reason, "gap": 0.8, "prev_gap": 1.0, "drift": 0.1,
                              "drift_budget": DEFAULT_DRIFT_BUDGET, "heldout": 1}


@pytest.mark.parametrize("gap, prev, drift, kwargs, why", [
    (1.0, 1.0, 0.1, {}, "is not below the base model's"),  # equal is not better
    (1.2, 1.0, 0.1, {}, "is not below"),
    (0.5, 1.0, 0.6, {}, "drift 0.600 nats/token exceeds the budget 0.500"),
    (0.5, 1.0, 0.3, {"drift_budget": 0.2}, "exceeds the budget 0.200"),
    (0.95, 1.0, 0.1, {"min_improvement": 0.1}, "is not below"),
    (0.5, 1.0, 0.1, {"heldout": 0}, "no held-out episodes"),
    (math.nan, 1.0, 0.1, {}, "not a finite number"),
])
def test_rejects_with_the_reason(gap, prev, drift, kwargs, why):
    r = decide(gap, prev, drift, **kwargs)
    assert not r.accepted and why in r.reason


# ---------------------------------------------------------------- real measurements on the tiny model

def _pairs(prompts, ctx, tag):
    from learnagent.learning.pairs import Pair

    return [Pair(f"{tag}{i}", [{"role": "user", "content": p}], ctx, None) for i, p in enumerate(prompts)]


CA = "class Store:\n    def __init__(self, path):\n        self.path = path\n" * 2
CB = "<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE\n <finish>done</finish> <run>pytest -q</run>" * 2
A = ["def add(a, b):", "def sub(a, b):", "def mul(a, b):", "def div(a, b):", "def neg(a):", "def pos(b):"]
B = ["import os", "import sys", "print('hello')", "import re", "print('world')", "import json"]


def test_gate_accepts_a_trained_adapter_and_rejects_a_useless_one(git_repo, tiny_model_dir, tmp_path):
    """Two prompt families, each with its own context. v1 is really trained (OPSD) and must beat
    the base model on held-out prompts; v2, a LoRA of random noise, must lose to v1, which
    stays promoted."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from learnagent.learning.evaluate import load_with_adapters
    from learnagent.learning.gate import GateConfig, run_gate
    from learnagent.learning.opsd import train_opsd
    from learnagent.learning.registry import Registry, promoted_adapter
    from learnagent.learning.train_common import TrainConfig
    from learnagent.store.episodes import Store

    train = _pairs(A[:4], CA, "a") + _pairs(B[:4], CB, "b")
    held = _pairs(A[4:], CA, "ha") + _pairs(B[4:], CB, "hb")
    store = Store()
    reg = Registry(store, git_repo)
    v1 = reg.reserve(parent=None, method="opsd", base_model="tiny")
    cfg = TrainConfig(steps=16, samples_per_prompt=2, max_new_tokens=12, lr=5e-3, rank=8, low_priority=False,
                      checkpoint_every=0, kl_clip=None, skip_first=0)
    train_opsd(tiny_model_dir, train, [], prev_adapter=None, out_dir=reg.folder(v1), config=cfg, progress=False)

    v2 = reg.reserve(parent=v1, method="opsd", base_model="tiny")
    noise = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(3)
    with torch.no_grad():
        for n, p in noise.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    noise.save_pretrained(reg.folder(v2))

    model, tok = load_with_adapters(tiny_model_dir, {v1: reg.folder(v1), v2: reg.folder(v2)})
    gc = GateConfig(samples=2, max_new_tokens=12, drift_max_new_tokens=12)
    first = run_gate(model, tok, held, candidate=v1, previous=None, config=gc)
    assert first.accepted, first.reason
    assert first.gap < first.prev_gap and first.drift < gc.drift_budget
    reg.finish(v1, metrics=first.as_metrics(), episode_ids=[p.episode_id for p in train], config={})
    reg.promote(v1, first.reason)

    second = run_gate(model, tok, held, candidate=v2, previous=v1, config=gc)
    assert not second.accepted, second.reason
    reg.finish(v2, metrics=second.as_metrics(), episode_ids=[], config={})
    reg.reject(v2, second.reason)
    assert promoted_adapter(git_repo)[0] == v1
    assert reg.get(v2)["status"] == "rejected" and reg.get(v2)["reason"] == second.reason
    store.close()
