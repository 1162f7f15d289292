"""OPSD trainer, rollout scoring and the SFT baseline on the tiny in-process model.

The gap test needs a base model that actually reads its context, so `convention_model`
first teaches the tiny random model one rule by plain full fine-tuning: with the
experience "Always print hello world." before the task it answers `print('hello world')`,
without it `def add(a, b):`. OPSD must then move that behaviour into the LoRA so the
student, WITHOUT the context, behaves like the teacher on prompts it never trained on.
"""

import pytest
import torch

from learnagent.core.errors import LearnagentError
from learnagent.learning.opsd import TrainConfig, data_order, train_opsd
from learnagent.learning.pairs import Pair
from learnagent.learning.rollout import (GENERAL_PROMPTS, adapter_context, batch_completion_logprobs,
                                         build_prefix_cache, completion_logprobs, distillation_gap, drift, encode,
                                         sample)
from learnagent.learning.sft import train_sft
from learnagent.learning.train_common import CHECKPOINT, ON_POLICY
from tiny_model import make_tiny_model, save_model_dir, teach

RULE = "Always print hello world."
SYSTEM = {"role": "system", "content": "You are a coding agent."}


def task(i):
    return [SYSTEM, {"role": "user", "content": f"Task: write def add{i}(a, b)"}]


def pair(i, target=None):
    return Pair(f"ep{i}", task(i), RULE, target)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fast_config(**kw):
    base = dict(steps=4, samples_per_prompt=2, max_new_tokens=6, lr=3e-3, k=20, skip_first=0, kl_clip=None,
                lambda_ret=0.0, grad_accum=1, rank=4, checkpoint_every=0, low_priority=False, **ON_POLICY)
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def convention_model(tmp_path_factory):
    """A tiny model that follows RULE when (and only when) it is in its context."""
    model, tok = make_tiny_model()
    rows = []
    for i in range(24):
        for ctx in (True, False):
            prompt = encode(tok, task(i), RULE if ctx else None)[0].tolist()
            answer = tok("print('hello world')" if ctx else "def add(a, b):", add_special_tokens=False)["input_ids"]
            rows.append((prompt, answer + [tok.eos_token_id]))
    loss = teach(model, tok, rows, steps=60, batch=8, lr=3e-3)
    assert loss < 0.5, f"the convention model did not learn its rule (loss {loss:.2f})"
    return save_model_dir(model, tok, tmp_path_factory.mktemp("conv") / "model")


@pytest.fixture(scope="module")
def trained(convention_model, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(convention_model)
    tok = AutoTokenizer.from_pretrained(convention_model)
    base_before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    out = tmp_path_factory.mktemp("opsd") / "adapter"
    seen = []
    result = train_opsd((model, tok), [pair(i) for i in range(8)], None, prev_adapter=None, out_dir=out,
                        config=fast_config(steps=8, max_new_tokens=10), progress=lambda *a: seen.append(a))
    return result, model, base_before, seen


# ---------------------------------------------------------------- rollout

def _reference_logprobs(model, prompt, completion):
    """The plain way: one full forward of prompt + completion, rows that predict the completion."""
    full = torch.cat([prompt[0], completion])[None]
    return model(input_ids=full).logits[0, prompt.shape[1] - 1: -1].float().log_softmax(-1)


def test_prefix_cache_scores_like_a_full_forward():
    model, tok = make_tiny_model()
    x, t = encode(tok, task(1)), encode(tok, task(1), RULE)
    assert t.shape[1] > x.shape[1] and t.shape[0] == 1
    comps = sample(model, tok, x, 3, 8, seed=5)
    shared, mask = batch_completion_logprobs(model, t, comps)
    prefix = build_prefix_cache(model, t)
    cached, _ = batch_completion_logprobs(model, t, comps, prefix)
    again, _ = batch_completion_logprobs(model, t, comps, prefix)  # the cache is not consumed
    for i, c in enumerate(comps):
        ref = _reference_logprobs(model, t, c)
        assert torch.allclose(shared[i, : len(c)], ref, atol=1e-5)
        assert torch.allclose(cached[i, : len(c)], ref, atol=1e-5)
    assert torch.equal(cached, again)
    one = completion_logprobs(model, t, comps[1])
    assert one.shape == (len(comps[1]), len(tok))
    assert torch.allclose(one, shared[1, : len(comps[1])], atol=1e-6)


def test_shared_prompt_gradient_equals_separate_forwards():
    from peft import LoraConfig, get_peft_model

    model, tok = make_tiny_model()
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    x = encode(tok, task(2))
    comps = [torch.tensor([5, 9, 11, 40]), torch.tensor([7, 3])]
    params = [p for p in pm.parameters() if p.requires_grad]
    weights = torch.randn(len(tok), generator=torch.Generator().manual_seed(0))
    logp, mask = batch_completion_logprobs(pm, x, comps)
    g_shared = torch.autograd.grad((logp[mask] * weights).sum(), params)
    ref = torch.cat([_reference_logprobs(pm, x, c) for c in comps])
    g_ref = torch.autograd.grad((ref * weights).sum(), params)
    assert any(g.abs().sum() > 0 for g in g_ref)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_shared, g_ref))


def test_sample_is_seeded_and_cut_after_end_of_turn(convention_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(convention_model)
    tok = AutoTokenizer.from_pretrained(convention_model)
    x = encode(tok, task(3), RULE)
    a, b = sample(model, tok, x, 2, 20, seed=1), sample(model, tok, x, 2, 20, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    greedy = sample(model, tok, x, 1, 20, temperature=0)[0]
    assert greedy[-1].item() == tok.eos_token_id and (greedy == tok.eos_token_id).sum() == 1
    assert tok.decode(greedy[:-1]) == "print('hello world')"


def test_adapter_context_switches_and_restores_trainability():
    from peft import LoraConfig, get_peft_model

    model, tok = make_tiny_model()
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False)
    pm = get_peft_model(model, cfg, adapter_name="student")
    pm.add_adapter("teacher", LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    pm.set_adapter("student")
    for n, p in pm.named_parameters():
        if "teacher" in n:
            p.requires_grad_(False)
    x = encode(tok, task(0))
    logits = {}
    for name in ("student", "teacher", None):
        with adapter_context(pm, name):
            logits[name] = pm(input_ids=x).logits
    assert not torch.allclose(logits["student"], logits["teacher"])
    assert not torch.allclose(logits["student"], logits[None])
    assert pm.active_adapter == "student"
    grads = {n.split(".")[-2]: p.requires_grad for n, p in pm.named_parameters() if "lora_A" in n}
    assert grads == {"student": True, "teacher": False}
    with pytest.raises(ValueError, match="no adapter named"):
        with adapter_context(pm, "nope"):
            pass
    assert drift(pm, tok, GENERAL_PROMPTS[:2], adapter="student", max_new_tokens=4) > 0
    assert drift(pm, tok, GENERAL_PROMPTS[:2], adapter=None) == 0.0


def test_data_order_is_a_permutation_per_epoch():
    seen = [data_order(5, s, m, 2, seed=3) for s in range(5) for m in range(2)]
    assert sorted(seen[:5]) == list(range(5)) and sorted(seen[5:]) == list(range(5))
    assert seen == [data_order(5, s, m, 2, seed=3) for s in range(5) for m in range(2)]


# ---------------------------------------------------------------- OPSD

def test_training_changes_only_the_lora(trained):
    result, model, base_before, seen = trained
    assert result.steps == 8 and result.stopped is None and result.tokens > 0 and result.tokens_per_s > 0
    assert len(result.losses) == 8 and len(seen) == 8 and seen[-1][:2] == (8, 8)
    assert all(torch.equal(p, before) for p, before in base_before.values())
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero
    files = {f.name for f in result.adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and CHECKPOINT not in files


def test_distillation_gap_halves_on_heldout_prompts(trained, convention_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = trained[0]
    assert result.kl_last < result.kl_first
    base = AutoModelForCausalLM.from_pretrained(convention_model)
    tok = AutoTokenizer.from_pretrained(convention_model)
    pm = PeftModel.from_pretrained(base, str(result.adapter_dir), adapter_name="student")
    heldout = [pair(i) for i in range(100, 104)]  # never trained on
    kw = dict(teacher_adapter=None, samples=2, max_new_tokens=10, seed=123)
    before = distillation_gap(pm, tok, heldout, student_adapter=None, **kw)
    after = distillation_gap(pm, tok, heldout, student_adapter="student", **kw)
    assert before > 0.1, f"the synthetic convention is too weak to measure (gap {before:.3f})"
    assert after <= 0.5 * before, f"gap {before:.3f} -> {after:.3f}"
    with adapter_context(pm, "student"):
        text = tok.decode(sample(pm, tok, encode(tok, task(200)), 1, 12, temperature=0)[0])
    assert text.startswith("print('hello world')")


def test_interrupted_training_resumes_to_the_same_end(tiny_model_dir, tmp_path):
    pairs = [pair(i) for i in range(3)]
    replay = [GENERAL_PROMPTS[0], task(50)]
    cfg = fast_config(steps=4, lambda_ret=0.5)
    straight = train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "a", config=cfg,
                          progress=False)
    assert straight.steps == 4 and straight.resumed_from is None
    calls = []
    first = train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "b", config=cfg,
                       progress=False, should_stop=lambda: calls.append(1) or len(calls) >= 2)
    assert first.steps == 2 and first.stopped == "should_stop"
    assert (tmp_path / "b" / CHECKPOINT / "state.pt").is_file()
    second = train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "b", config=cfg,
                        progress=False)
    assert second.resumed_from == 2 and second.steps == 4 and second.stopped is None
    assert len(second.losses) == 4 and second.losses[:2] == first.losses
    assert not (tmp_path / "b" / CHECKPOINT).exists()
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_previous_adapter_is_the_frozen_teacher(trained, convention_model, tmp_path):
    prev = trained[0].adapter_dir
    before = (prev / "adapter_model.safetensors").read_bytes()
    result = train_opsd(convention_model, [pair(i) for i in range(3)], [task(60)], prev_adapter=prev,
                        out_dir=tmp_path / "next", config=fast_config(steps=2, lambda_ret=1.0), progress=False)
    assert result.steps == 2
    assert (prev / "adapter_model.safetensors").read_bytes() == before
    # the student started from the previous adapter, which already agrees with its teacher
    assert result.kl_first < trained[0].kl_first


def test_bad_input_gives_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(LearnagentError, match="no training pairs"):
        train_opsd(tiny_model_dir, [], None, prev_adapter=None, out_dir=tmp_path, config=fast_config())
    with pytest.raises(LearnagentError, match="no LoRA adapter at .* \(adapter_config.json missing\)"):  # runtime.loading
        train_opsd(tiny_model_dir, [pair(0)], None, prev_adapter=tmp_path / "missing", out_dir=tmp_path,
                   config=fast_config())


# ---------------------------------------------------------------- SFT baseline

def test_sft_baseline_lowers_its_loss(convention_model, tiny_model_dir, tmp_path):
    # (the random tiny model's logits are too flat for any LoRA to fit text; the convention model's are not)
    pairs = [pair(i, target="print('hello world')") for i in range(4)] + [pair(9)]  # no target: skipped
    result = train_sft(convention_model, pairs, prev_adapter=None, out_dir=tmp_path / "sft",
                       config=fast_config(steps=12), progress=False)
    assert result.method == "sft" and result.steps == 12
    assert sum(result.losses[-3:]) / 3 < 0.5 * sum(result.losses[:3]) / 3
    assert (tmp_path / "sft" / "adapter_model.safetensors").is_file()
    with pytest.raises(LearnagentError, match="accepted diff"):
        train_sft(tiny_model_dir, [pair(9)], prev_adapter=None, out_dir=tmp_path / "x", config=fast_config())


# ---------------------------------------------------------------- the real default model

@pytest.mark.slow
def test_a_few_opsd_steps_on_smollm2(tmp_path):
    from learnagent.core.modelhub import installed_default_path

    path = installed_default_path()
    if path is None:
        pytest.skip("SmolLM2-135M is not installed (run `learnagent model install`)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    t = encode(tok, task(1), RULE)
    comps = sample(model, tok, encode(tok, task(1)), 2, 6, seed=0)
    full, mask = batch_completion_logprobs(model, t, comps)
    cached, _ = batch_completion_logprobs(model, t, comps, build_prefix_cache(model, t))
    assert torch.allclose(full[mask], cached[mask], atol=1e-3)
    result = train_opsd((model, tok), [pair(i) for i in range(2)], [GENERAL_PROMPTS[0]], prev_adapter=None,
                        out_dir=tmp_path / "smol", config=fast_config(steps=2, lr=1e-4, rank=16, lambda_ret=0.1),
                        progress=False)
    assert result.steps == 2 and result.tokens > 0
    assert (tmp_path / "smol" / "adapter_model.safetensors").is_file()


# ---------------------------------------------------------------- targets: teacher samples, real text

def text_pair(i):
    """A raw-text code pair whose prompt ends in blank lines (as a miner cutting at line starts gives)."""
    return Pair(f"file:m{i}.py", f"# m{i}.py\n\"\"\"Module {i}.\"\"\"\n\n", RULE, f"def f{i}(a, b):\n    return a + b\n")


def test_text_pairs_are_cut_at_a_token_boundary(tiny_model_dir):
    from transformers import AutoTokenizer

    from learnagent.learning.rollout import at_token_boundary, encode_text

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    p = text_pair(1)
    prompt, target = at_token_boundary(p.prompt, p.target)
    assert prompt == p.prompt.rstrip() and target == "\n\n" + p.target and prompt + target == p.prompt + p.target
    assert at_token_boundary(task(1), "x") == (task(1), "x")  # chat: unchanged
    assert encode_text(tok, "").tolist() == [[tok.eos_token_id]]  # a file from its start has a position
    ctx = encode_text(tok, "b", "a")[0].tolist()
    assert ctx == tok("a\n\nb")["input_ids"]


@pytest.mark.parametrize("targets", ["data", "teacher"])
def test_teacher_samples_and_real_continuations_train_and_resume(tiny_model_dir, tmp_path, targets):
    pairs = [text_pair(i) for i in range(3)] + [pair(9, target="print('hello world')")]
    seen = []

    def accept(p, text):
        seen.append((p.episode_id, text))
        return False  # refuse every teacher sample: the step falls back to the student's own

    cfg = fast_config(steps=3, targets=targets, support="teacher", forward_weight=1.0)
    straight = train_opsd(tiny_model_dir, pairs, None, prev_adapter=None, out_dir=tmp_path / "a", config=cfg,
                          progress=False, accept=accept)
    assert straight.steps == 3 and straight.tokens > 0 and all(k >= 0 for k in straight.kls)
    if targets == "teacher":
        assert len(seen) == 3 * cfg.samples_per_prompt  # every sample went through the check
    else:
        assert not seen  # real continuations are not checked
    calls = []
    first = train_opsd(tiny_model_dir, pairs, None, prev_adapter=None, out_dir=tmp_path / "b", config=cfg,
                       progress=False, accept=accept, should_stop=lambda: calls.append(1) or len(calls) >= 1)
    second = train_opsd(tiny_model_dir, pairs, None, prev_adapter=None, out_dir=tmp_path / "b", config=cfg,
                        progress=False, accept=accept)
    assert first.steps == 1 and second.resumed_from == 1 and second.losses[:1] == first.losses
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_unknown_targets_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(LearnagentError, match="targets must be one of"):
        train_opsd(tiny_model_dir, [pair(0)], None, prev_adapter=None, out_dir=tmp_path,
                   config=fast_config(targets="oracle"))


def test_kept_teacher_topk_gives_the_same_loss_as_a_fresh_teacher_pass(tiny_model_dir):
    from learnagent.learning.opsd import opsd_micro_step
    from learnagent.learning.train_common import load_student

    cfg = fast_config(targets="data", support="teacher", forward_weight=1.0, k=8)
    model, tok = load_student(tiny_model_dir, None, cfg, with_teacher=True)
    kept = {}
    fresh, _ = opsd_micro_step(model, tok, text_pair(1), None, teacher=None, config=cfg, seed=0)
    first, _ = opsd_micro_step(model, tok, text_pair(1), None, teacher=None, config=cfg, seed=0, kept_teacher=kept)
    assert len(kept) == 1
    again, _ = opsd_micro_step(model, tok, text_pair(1), None, teacher=None, config=cfg, seed=0, kept_teacher=kept)
    assert fresh.item() > 0 and abs(first.item() - fresh.item()) < 1e-6 and abs(again.item() - fresh.item()) < 1e-6


def test_anchor_retention_draws_each_replay_once_and_resumes_to_the_same_end(tiny_model_dir, tmp_path):
    from learnagent.learning import opsd

    drawn = []
    real_sample = opsd.sample

    def counting(*a, **kw):
        drawn.append(kw.get("seed"))
        return real_sample(*a, **kw)

    cfg = fast_config(steps=4, targets="data", support="teacher", forward_weight=1.0, data_weight=0.5,
                      lambda_ret=0.5, retention="anchor")
    pairs, replay = [text_pair(i) for i in range(2)], [GENERAL_PROMPTS[0], "def fibonacci(n):"]
    opsd.sample = counting
    try:
        straight = train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "a",
                              config=cfg, progress=False)
    finally:
        opsd.sample = real_sample
    assert straight.steps == 4 and len(drawn) == 2  # one draw per replay prompt, then reused
    calls = []
    train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "b", config=cfg, progress=False,
               should_stop=lambda: calls.append(1) or len(calls) >= 2)
    resumed = train_opsd(tiny_model_dir, pairs, replay, prev_adapter=None, out_dir=tmp_path / "b", config=cfg,
                         progress=False)
    assert resumed.resumed_from == 2 and resumed.losses == pytest.approx(straight.losses, abs=1e-6)
