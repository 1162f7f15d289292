"""The local transformers backend on the tiny random Llama (real transformers and peft, CPU)."""

import pytest
import torch

from learnagent.runtime.model import Model
from learnagent.runtime.engine_hf import TransformersModel as LocalModel
from learnagent.runtime.loading import load_base
from learnagent.runtime.placement import pick_dtype, placement
from learnagent.core.errors import ModelNotFound

CHAT = [{"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "def add(a, b): fix the bug"}]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return LocalModel(tiny_model_dir, device="cpu")


def reference_generate(model, tokenizer, messages, max_new):
    """What plain transformers greedy decoding produces for the same conversation."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                             do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return ids.shape[1], out[0, ids.shape[1]:].tolist()


def test_is_a_model_with_a_name(lm):
    assert isinstance(lm, Model)
    assert lm.name == "local:model" and lm.adapter_version is None
    assert lm.device == "cpu" and lm.dtype == torch.float32 == pick_dtype("cpu")


def test_complete_matches_plain_transformers_and_counts_exactly(lm, tiny_model_dir):
    model, tok = load_base(tiny_model_dir, placement("cpu"))
    n_prompt, generated = reference_generate(model, tok, CHAT, 12)
    done = lm.complete(CHAT, max_tokens=12)
    assert done.prompt_tokens == n_prompt
    assert done.completion_tokens == len(generated)
    assert done.text == tok.decode(generated, skip_special_tokens=True) and done.text
    assert done.duration_s > 0 and done.cost_usd == 0.0
    assert done.extra["stop_reason"] in ("eos", "max_tokens") and "truncated" not in done.extra


def test_on_text_streams_exactly_the_final_text(lm):
    pieces = []
    done = lm.complete(CHAT, max_tokens=20, on_text=pieces.append)
    assert len(pieces) > 1  # streamed token by token, not once at the end
    assert "".join(pieces) == done.text


@pytest.mark.parametrize("max_tokens", [1, 3, 9])
def test_max_tokens_respected(lm, max_tokens):
    done = lm.complete(CHAT, max_tokens=max_tokens)
    assert 1 <= done.completion_tokens <= max_tokens


def test_deterministic_at_temperature_zero_and_seeded_sampling(lm, tiny_model_dir):
    assert lm.complete(CHAT, max_tokens=10).text == lm.complete(CHAT, max_tokens=10).text
    a = LocalModel(tiny_model_dir, device="cpu", temperature=1.0, seed=7).complete(CHAT, max_tokens=10)
    b = LocalModel(tiny_model_dir, device="cpu", temperature=1.0, seed=7).complete(CHAT, max_tokens=10)
    assert a.text == b.text


def test_stops_at_a_stop_token(tiny_model_dir):
    lm = LocalModel(tiny_model_dir, device="cpu")
    assert lm.tokenizer.convert_tokens_to_ids("<|im_end|>") in lm.stop_ids
    first = lm.complete(CHAT, max_tokens=1)
    ids = lm.tokenizer(first.text, add_special_tokens=False)["input_ids"]
    lm.stop_ids = sorted(set(lm.stop_ids) | {ids[0]})  # make the first greedy token a stop token
    done = lm.complete(CHAT, max_tokens=10)
    assert done.completion_tokens == 1 and done.extra["stop_reason"] == "eos"


def test_count_tokens_uses_the_tokenizer(lm):
    text = "def add(a, b):\n    return a + b\n"
    assert lm.count_tokens(text) == len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert lm.count_tokens("") == 0


def test_same_model_is_loaded_once_per_process(lm, tiny_model_dir):
    again = LocalModel(tiny_model_dir, device="cpu")
    assert again.model is lm.model and again.tokenizer is lm.tokenizer
    fresh, _ = load_base(tiny_model_dir, placement("cpu"))
    assert fresh is not lm.model  # training code gets its own copy


def test_long_conversation_keeps_system_and_latest_turns(tiny_model_dir):
    lm = LocalModel(tiny_model_dir, device="cpu", context_window=160)
    turns = [{"role": "system", "content": "SYSTEM RULES"}]
    for i in range(12):
        turns.append({"role": "user", "content": f"question {i}: " + "print('hello world') " * 3})
        turns.append({"role": "assistant", "content": f"answer {i}"})
    turns.append({"role": "user", "content": "LAST QUESTION"})
    done = lm.complete(turns, max_tokens=8)
    cut = done.extra["truncated"]
    assert cut["dropped_messages"] > 0 and cut["prompt_tokens_before"] > 160 - 8
    assert done.prompt_tokens <= 160 - 8 and done.completion_tokens <= 8
    ids, _ = lm.fit_prompt(turns, 160 - 8)
    kept = lm.tokenizer.decode(ids)
    assert kept.startswith("<|im_start|>system\nSYSTEM RULES") and "LAST QUESTION" in kept
    assert "question 0:" not in kept


def test_one_huge_message_keeps_its_end(tiny_model_dir):
    lm = LocalModel(tiny_model_dir, device="cpu", context_window=128)
    huge = "import os\n" * 200 + "THE END"
    done = lm.complete([{"role": "system", "content": "sys"}, {"role": "user", "content": huge}], max_tokens=4)
    assert done.extra["truncated"]["cut_tokens"] > 0 and done.prompt_tokens <= 124
    ids, _ = lm.fit_prompt([{"role": "system", "content": "sys"}, {"role": "user", "content": huge}], 124)
    kept = lm.tokenizer.decode(ids)
    assert "truncated" in kept and "THE END" in kept and kept.startswith("<|im_start|>system\nsys")


def make_adapter(tiny_model_dir, folder):
    """A LoRA on the tiny model whose B matrices are non-zero, so it changes the outputs."""
    from tiny_model import make_adapter as tiny_adapter

    return tiny_adapter(tiny_model_dir, folder, std=0.5, target_modules=["q_proj", "v_proj", "o_proj"])


def test_adapter_changes_outputs_and_is_recorded(tiny_model_dir, tmp_path, lm):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapters" / "v0003")
    tuned = LocalModel(tiny_model_dir, adapter_path=adapter, adapter_version="v3", device="cpu")
    assert tuned.adapter_version == "v3" and tuned.name == lm.name
    assert tuned.model is not lm.model  # the base used by `lm` got no LoRA layers injected
    ids = torch.tensor([lm.prompt_ids(CHAT)])
    with torch.no_grad():
        base_logits, tuned_logits = lm.model(ids).logits, tuned.model(ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
    tuned_reply, base_reply = tuned.complete(CHAT, max_tokens=12), lm.complete(CHAT, max_tokens=12)
    assert tuned_reply.text != base_reply.text
    assert (tuned_reply.extra["engine"], tuned_reply.extra["adapter"]) == ("transformers", "v3")
    assert (base_reply.extra["engine"], base_reply.extra["adapter"]) == ("transformers", None)
    # The version defaults to the adapter folder's name.
    assert LocalModel(tiny_model_dir, adapter_path=adapter, device="cpu").adapter_version == "v0003"


def test_missing_model_or_adapter_is_a_one_line_error(tiny_model_dir, tmp_path):
    with pytest.raises(ModelNotFound, match="cannot load model"):
        LocalModel(tmp_path / "nothing-here", device="cpu")
    with pytest.raises(ModelNotFound, match="no LoRA adapter"):
        LocalModel(tiny_model_dir, adapter_path=tmp_path / "no-adapter", device="cpu")
