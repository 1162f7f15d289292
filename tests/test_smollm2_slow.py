"""The real default model (SmolLM2-135M-Instruct) as installed by `learnagent model install`."""

import json

import pytest
import torch

from learnagent.core.modelhub import installed_default_path

pytestmark = pytest.mark.slow

DEFAULT = installed_default_path()
needs_model = pytest.mark.skipif(DEFAULT is None, reason="the default model is not installed: "
                                 "run `learnagent model install` to enable the SmolLM2 tests")

QUESTION = [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}]


@needs_model
def test_saved_folder_is_a_plain_trainable_model():
    config = json.loads((DEFAULT / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    tok_config = json.loads((DEFAULT / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|im_end|>"
    assert json.loads((DEFAULT / "generation_config.json").read_text())["eos_token_id"] == config["eos_token_id"]


@needs_model
def test_answers_a_short_chat_deterministically():
    from learnagent.runtime.engine_hf import TransformersModel as LocalModel

    lm = LocalModel(DEFAULT, device="cpu")
    assert lm.name == "local:smollm2-135m-instruct" and lm.context_window == 8192
    streamed = []
    first = lm.complete(QUESTION, max_tokens=32, on_text=streamed.append)
    second = lm.complete(QUESTION, max_tokens=32)
    assert first.text.strip() and first.text == second.text == "".join(streamed)
    assert "Paris" in first.text
    assert first.extra["stop_reason"] == "eos" and first.completion_tokens < 32  # stopped at <|im_end|>
    assert "<|im_end|>" not in first.text


@needs_model
def test_peft_lora_attaches_and_trains_one_step():
    from peft import LoraConfig, get_peft_model

    from learnagent.runtime.loading import load_base
    from learnagent.runtime.placement import placement

    base, tok = load_base(DEFAULT, placement("cpu"))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.train()
    ids = tok.apply_chat_template(QUESTION + [{"role": "assistant", "content": "Paris."}],
                                  return_dict=True, return_tensors="pt")["input_ids"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and sum(p.numel() for p in trainable) < 0.02 * sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in trainable if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    optimizer.step()
    with torch.no_grad():
        after = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss) and after.item() != loss.item()
