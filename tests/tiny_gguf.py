"""Write the tiny random Llama (tests/tiny_model.py) as an F32 GGUF file, the way llama.cpp would.

Lets the installer's GGUF -> transformers conversion run in the unit tests without the real
93 MB wheel: the converted folder must reproduce the tiny model's logits.
"""

from __future__ import annotations

import json
from pathlib import Path


def _permute(w, n_head: int):
    # llama.cpp's convert_hf_to_gguf.py reorders q/k rows for its rotary layout; transformers undoes it.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_tiny_gguf(model, tokenizer, path: Path) -> Path:
    import gguf
    import numpy as np

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = set(tokenizer.all_special_tokens)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)

    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        for hf_name, gguf_name in _LAYER_NAMES.items():
            w = state[f"model.layers.{i}.{hf_name}"]
            if hf_name.startswith("self_attn.q_proj"):
                w = _permute(w, cfg.num_attention_heads)
            elif hf_name.startswith("self_attn.k_proj"):
                w = _permute(w, cfg.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{gguf_name}", np.ascontiguousarray(w))
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def make_gguf_model_dir(folder: Path, seed: int = 5) -> Path:
    """A model folder as `learnagent model install` leaves it: transformers weights + its F32 GGUF + marker."""
    from tiny_model import make_tiny_model, save_model_dir

    model, tok = make_tiny_model(seed=seed)
    save_model_dir(model, tok, folder)
    write_tiny_gguf(model, tok, folder / "tiny.f32.gguf")
    (folder / "learnagent-model.json").write_text(json.dumps({"gguf": "tiny.f32.gguf"}))
    return folder
