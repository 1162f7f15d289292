"""Loading a base model with named LoRA adapters in-process (transformers + peft), in one place.

- `load_base(path, placement)`: a fresh base model in eval mode and its tokenizer.
- `attach_adapters(model, {name: folder}, trainable=...)`: each adapter checked (files complete,
  trained on this base) and loaded under its name, frozen unless named in `trainable`.
- `chat_prompt_ids(tokenizer, messages)`: the conversation through the model's chat template.

Fresh, uncached objects: PEFT injects LoRA layers into the model it is given, so training code
must never share a model object with a running agent (the agent's cache is in `engine_hf`).
"""

from __future__ import annotations

from pathlib import Path

from learnagent.core.errors import ModelNotFound
from learnagent.runtime.identity import BaseIdentity, base_identity, check_adapter_base
from learnagent.runtime.placement import Placement, placement as default_placement


def load_base(path: str | Path, where: Placement | None = None):
    """(model, tokenizer) of a base model folder or cached hub id, on `where` (default: the policy)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where = where or default_placement()
    target = str(path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load weights bar would clutter the command's display
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=where.dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"cannot load model '{target}': {first}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(where.device)
    model.eval()
    return model, tokenizer


def check_adapter(folder: Path, base: BaseIdentity | None, label: str | None = None) -> None:
    """One-line errors for an adapter folder that is missing, incomplete, corrupt, or for another base."""
    from learnagent.store.privacy import verify_adapter

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFound(f"no LoRA adapter at '{folder}' (adapter_config.json missing)")
    verify_adapter(folder)  # a truncated file gets a one-line error, not a safetensors traceback
    if base is not None:
        check_adapter_base(folder, base, label)


def attach_adapters(model, adapters: dict[str, Path], *, base_path: str | Path | None = None,
                    trainable: tuple[str, ...] = (), where: Placement | None = None):
    """`model` wrapped with each adapter under its name (frozen unless in `trainable`); the first
    adapter is active. `base_path` (the folder `model` came from) enables the base check."""
    if not adapters:
        return model
    from peft import PeftModel

    base = base_identity(base_path) if base_path is not None else None
    items = [(name, Path(folder)) for name, folder in adapters.items()]
    for name, folder in items:
        check_adapter(folder, base, name)
    name, folder = items[0]
    wrapped = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=name in trainable)
    for name, folder in items[1:]:
        wrapped.load_adapter(str(folder), adapter_name=name, is_trainable=name in trainable)
    wrapped.set_adapter(items[0][0])
    if where is not None:
        wrapped.to(where.device)
    wrapped.eval()
    return wrapped


def load_with_adapters(path: str | Path, adapters: dict[str, Path], *, trainable: tuple[str, ...] = (),
                       where: Placement | None = None):
    """The base once, with each adapter folder under its name; + tokenizer."""
    where = where or default_placement()
    model, tokenizer = load_base(path, where)
    return attach_adapters(model, adapters, base_path=path, trainable=trainable, where=where), tokenizer


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of the conversation rendered with the chat template, ready for the answer."""
    clean = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]
    out = tokenizer.apply_chat_template(clean, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(out["input_ids"])
