"""A PEFT LoRA adapter written as a GGUF LoRA that llama.cpp (and Ollama) load on the original GGUF.

The format, as llama.cpp's adapter loader reads it (src/llama-adapter.cpp):
- metadata `general.type = "adapter"`, `general.architecture` = the base's architecture,
  `adapter.type = "lora"`, `adapter.lora.alpha` (float32);
- per adapted weight `W` (GGUF name, e.g. `blk.3.attn_q.weight`) two tensors `W.lora_a` and
  `W.lora_b`. In numpy order `lora_a` is (rank, in) and `lora_b` is (out, rank) — PEFT's own
  `lora_A.weight` and `lora_B.weight` — and llama.cpp adds `scale * B @ (A @ x)` with
  `scale = user_scale * alpha / rank`, rank read from `lora_b`.
- llama's converter stores q and k weights with their rows permuted for its rotary layout; the
  same row permutation applies to `lora_b` of q and k (W + BA permuted = W' + (PB)A).

PEFT's scale (alpha/r, alpha/sqrt(r) with rsLoRA, per-module rank_pattern/alpha_pattern) is
folded into `lora_b` wherever it differs from the file's `alpha / rank`, so every variant comes
out exact. DoRA, embedding/lm_head adapters and extra trained modules have no llama.cpp
equivalent and are refused with a one-line error.

The file also records learnagent's own keys (`learnagent.base.name`, `learnagent.base.sha256`,
`learnagent.adapter.version`), so an engine can refuse it on the wrong base before loading it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from learnagent.core.errors import LearnagentError
from learnagent.runtime.identity import BaseIdentity

KEY_BASE_NAME = "learnagent.base.name"
KEY_BASE_SHA = "learnagent.base.sha256"
KEY_VERSION = "learnagent.adapter.version"

# transformers module path (inside a decoder layer) -> llama.cpp tensor name
_LAYER_MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# transformers model_type -> (GGUF architecture, whether q/k rows are permuted by the converter)
ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False),
                 "qwen3": ("qwen3", False)}
_KEY = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


class ExportError(LearnagentError):
    pass


def _permute_rows(w, n_head: int):
    """llama.cpp's q/k row order: each head's rows (pairs of rotary halves) interleaved."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _module_scale(config: dict, module: str, rank: int) -> float:
    """PEFT's scale for one module: alpha/r (alpha/sqrt(r) with rsLoRA), patterns applied."""
    alpha = config.get("lora_alpha", rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){re.escape(pattern)}$", module) or re.fullmatch(pattern, module):
            alpha = value
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _read_adapter(folder: Path):
    from safetensors.numpy import load_file

    config_path = folder / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        raise ExportError(f"{config_path} is missing or not valid JSON") from None
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ExportError(f"{folder} has no adapter_model.safetensors")
    if config.get("use_dora"):
        raise ExportError("DoRA adapters have no GGUF LoRA equivalent; train a plain LoRA to export it")
    if config.get("modules_to_save"):
        raise ExportError(f"the adapter also trains {config['modules_to_save']} in full; llama.cpp LoRA cannot hold that")
    return config, load_file(str(weights))


def convert(adapter_dir: Path, base_config: dict, out_file: Path, *, base: BaseIdentity | None = None,
            version: str | None = None, dtype: str = "f32") -> Path:
    """Write `adapter_dir` (a PEFT LoRA folder) as a GGUF LoRA at `out_file` (atomically).

    `base_config`: the base model's config.json (architecture, heads). Returns `out_file`.
    """
    import gguf
    import numpy as np

    adapter_dir, out_file = Path(adapter_dir), Path(out_file)
    config, tensors = _read_adapter(adapter_dir)
    model_type = base_config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ExportError(f"GGUF export supports {', '.join(sorted(ARCHITECTURES))} models, not '{model_type}'")
    arch, permuted = ARCHITECTURES[model_type]
    n_head = int(base_config["num_attention_heads"])
    n_head_kv = int(base_config.get("num_key_value_heads") or n_head)
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise ExportError(f"adapter tensor '{key}' is not a decoder-layer LoRA weight (embeddings and "
                              "lm_head cannot be served as LoRA by llama.cpp or vLLM)")
        layer, module, which = int(m.group(1)), m.group(2), m.group(3)
        if module not in _LAYER_MODULES:
            raise ExportError(f"adapter targets '{module}', which has no llama.cpp tensor")
        pairs.setdefault((layer, module), {})[which] = value
    if not pairs:
        raise ExportError(f"{adapter_dir} holds no LoRA weights")
    alpha = float(config.get("lora_alpha") or config.get("r") or 1)
    out_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        if base is not None:
            writer.add_string(KEY_BASE_NAME, base.name)
            writer.add_string(KEY_BASE_SHA, base.sha256)
        if version:
            writer.add_string(KEY_VERSION, version)
        for (layer, module), ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise ExportError(f"layer {layer} {module}: lora_A or lora_B is missing")
            a = ab["A"].astype(np.float32)
            b = ab["B"].astype(np.float32)
            rank = a.shape[0]
            if b.shape[1] != rank:
                raise ExportError(f"layer {layer} {module}: lora_A rank {rank} and lora_B {b.shape} disagree")
            fold = _module_scale(config, f"model.layers.{layer}.{module}", rank) / (alpha / rank)
            if fold != 1.0:
                b = b * np.float32(fold)
            if permuted and module == "self_attn.q_proj":
                b = _permute_rows(b, n_head)
            elif permuted and module == "self_attn.k_proj":
                b = _permute_rows(b, n_head_kv)
            name = f"blk.{layer}.{_LAYER_MODULES[module]}.weight"
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a.astype(out_dtype)))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b.astype(out_dtype)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, out_file)
    return out_file


def read_metadata(path: Path) -> dict:
    """The string/float metadata of a GGUF file (adapter or model), for checks and `adapters export`."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for name, field in reader.fields.items():
        if name.startswith(("general.", "adapter.", "learnagent.")):
            try:
                value = field.contents()
            except Exception:  # older gguf versions: no contents(); skip what cannot be read simply
                continue
            if isinstance(value, (str, int, float)):
                out[name] = value
    return out
