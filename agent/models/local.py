"""The local backend: a Hugging Face causal LM run in-process with transformers (+ a PEFT LoRA).

This is the model the agent learns with: `learnagent sleep` trains a LoRA on the same base
folder, and `LocalModel(path, adapter_path=...)` runs the agent with it. Device policy (shared
with the learning code through `load_base_and_tokenizer`): CUDA when present (bf16 where the
card supports it), else Apple MPS, else fp32 on CPU.

Loaded models are cached per process (keyed by folder, adapter, device and dtype): the agent
builds several `LocalModel`s in one run and a reload would cost a second or more each time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from learnagent.agent.models.base import Completion, Message
from learnagent.core.errors import LearnagentError, ModelNotFound

END_OF_TURN = "<|im_end|>"
TRUNCATION_NOTE = "[earlier text truncated to fit the model's context window]\n"

_CACHE: dict[tuple, tuple] = {}  # (path, adapter, device, dtype) -> (model, tokenizer)
_CACHE_LOCK = threading.Lock()


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str):
    """bf16 on CUDA cards that do it natively; fp32 elsewhere (CPU/MPS half precision is slow or lossy)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32


def load_base_and_tokenizer(path: str | Path, device: str | None = None, dtype=None):
    """A fresh (uncached) base model in eval mode and its tokenizer, on the policy's device/dtype.

    Fresh because PEFT injects LoRA layers into the model it is given: training code must not
    share an object with a running agent.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    device = pick_device(device)
    dtype = dtype or pick_dtype(device)
    target = str(path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load weights bar would clutter the agent's display
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"cannot load model '{target}': {first}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


def _load_cached(path: str, adapter_path: str | None, device: str, dtype):
    key = (path, adapter_path, device, str(dtype))
    with _CACHE_LOCK:
        if key not in _CACHE:
            model, tokenizer = load_base_and_tokenizer(path, device, dtype)
            if adapter_path is not None:
                model = _attach_adapter(model, adapter_path, device)
            _CACHE[key] = (model, tokenizer)
        return _CACHE[key]


def _attach_adapter(model, adapter_path: str, device: str):
    from peft import PeftModel

    from learnagent.store.privacy import verify_adapter

    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ModelNotFound(f"no LoRA adapter at '{adapter_path}' (adapter_config.json missing)")
    verify_adapter(Path(adapter_path))  # a truncated file gets a one-line error, not a safetensors traceback
    peft_model = PeftModel.from_pretrained(model, adapter_path, is_trainable=False)
    peft_model.to(device)
    peft_model.eval()
    return peft_model


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class _Streamer:
    """Receives token ids from `generate` (same thread) and forwards only complete new text.

    It decodes the whole completion so far on each step and emits the new suffix, holding back
    a trailing U+FFFD (half of a multi-byte character) so what `on_text` sees concatenates to
    exactly the final decoded text.
    """

    def __init__(self, tokenizer, on_text: Callable[[str], None] | None):
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.ids: list[int] = []
        self.emitted = ""
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first pushes the prompt
            self._prompt_seen = True
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _flush(self, final: bool) -> None:
        full = self.text()
        if not final and full.endswith("\ufffd"):
            return
        if full.startswith(self.emitted) and len(full) > len(self.emitted):
            piece, self.emitted = full[len(self.emitted):], full
            if self.on_text is not None:
                self.on_text(piece)


class LocalModel:
    """A transformers model (optionally with a LoRA adapter) behind the `Model` protocol."""

    def __init__(self, path: str | Path, adapter_path: Path | None = None, adapter_version: str | None = None,
                 device: str | None = None, temperature: float = 0.0, seed: int = 0,
                 context_window: int | None = None):
        folder = Path(path).expanduser()
        self.path = str(folder.resolve()) if folder.is_dir() else str(path)  # one cache key per folder
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.temperature = float(temperature)
        self.seed = int(seed)
        adapter = str(Path(adapter_path).resolve()) if adapter_path is not None else None
        self.model, self.tokenizer = _load_cached(self.path, adapter, self.device, self.dtype)
        self.adapter_path = adapter
        self.adapter_version = (adapter_version or Path(adapter).name) if adapter else None
        self.name = f"local:{Path(self.path).name if Path(self.path).is_dir() else self.path}"
        self.context_window = int(context_window or self._model_window())
        self.stop_ids = self._stop_ids()
        self._calls = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ Model protocol

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        import torch

        if max_tokens < 1:
            raise LearnagentError(f"max_tokens must be at least 1 (got {max_tokens})")
        started = time.perf_counter()
        reserve = min(max_tokens, self.context_window // 2)
        prompt_ids, truncation = self.fit_prompt(messages, self.context_window - reserve)
        max_new = max(1, min(max_tokens, self.context_window - len(prompt_ids)))
        streamer = _Streamer(self.tokenizer, on_text)
        input_ids = torch.tensor([prompt_ids], device=self.device)
        kwargs = dict(max_new_tokens=max_new, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, streamer=streamer)
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if self.temperature > 0:  # reproducible sampling: one seed per call
                torch.manual_seed(self.seed + self._calls)
            self._calls += 1
            output = self.model.generate(input_ids=input_ids,
                                         attention_mask=torch.ones_like(input_ids), **kwargs)
        generated = output[0, len(prompt_ids):].tolist()
        stopped = bool(generated) and generated[-1] in self.stop_ids
        text = streamer.text()
        extra = {"device": self.device, "stop_reason": "eos" if stopped else "max_tokens"}
        if truncation:
            extra["truncated"] = truncation
        if text != streamer.emitted:
            extra["stream_mismatch"] = True  # never seen with byte-level BPE; recorded if it happens
        return Completion(text=text, prompt_tokens=len(prompt_ids), completion_tokens=len(generated),
                          duration_s=time.perf_counter() - started, extra=extra)

    # ------------------------------------------------------------ prompt building

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """Token ids of the conversation rendered with the chat template, ready for the answer."""
        clean = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]
        out = self.tokenizer.apply_chat_template(clean, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)
        return list(out["input_ids"])

    def fit_prompt(self, messages: list[Message], budget: int) -> tuple[list[int], dict | None]:
        """The prompt within `budget` tokens: drop the oldest turns after the system message, then
        cut the oldest text of the last message; returns (ids, what was cut or None)."""
        ids = self.prompt_ids(messages)
        if len(ids) <= budget:
            return ids, None
        before = len(ids)
        head = [messages[0]] if messages and messages[0].get("role") == "system" else []
        rest = list(messages[len(head):])
        dropped = 0
        while len(rest) > 1 and len(ids) > budget:
            rest.pop(0)
            dropped += 1
            ids = self.prompt_ids(head + rest)
        cut = 0
        if len(ids) > budget and rest:
            last = dict(rest[-1])
            content = self.tokenizer(str(last.get("content") or ""), add_special_tokens=False)["input_ids"]
            overflow = len(ids) - budget + self.count_tokens(TRUNCATION_NOTE) + 2
            for _ in range(4):  # re-tokenising the cut text can differ by a few tokens: retry
                keep = content[min(len(content), overflow):]
                cut = len(content) - len(keep)
                last["content"] = TRUNCATION_NOTE + self.tokenizer.decode(keep)
                ids = self.prompt_ids(head + rest[:-1] + [last])
                if len(ids) <= budget or not keep:
                    break
                overflow += len(ids) - budget + 4
        if len(ids) > budget:  # the system message alone is too long: keep the newest tokens
            ids = ids[len(ids) - budget:]
        return ids, {"dropped_messages": dropped, "cut_tokens": cut, "prompt_tokens_before": before,
                     "budget": budget}

    # ------------------------------------------------------------ helpers

    def _model_window(self) -> int:
        config = self.model.config
        window = getattr(config, "max_position_embeddings", None) or 2048
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < window:
            window = tok_max
        return int(window)

    def _stop_ids(self) -> list[int]:
        ids = set()
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        end = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if isinstance(end, int) and end != self.tokenizer.unk_token_id:
            ids.add(end)
        return sorted(ids)
