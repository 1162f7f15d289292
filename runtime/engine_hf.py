"""The transformers engine: a Hugging Face causal LM run in-process (+ a PEFT LoRA).

This is the model the agent learns with: `learnagent sleep` trains a LoRA on the same base
folder, and `TransformersModel(path, adapter_path=...)` runs the agent with it. Placement comes
from `runtime.placement` (the one device/dtype policy), loading from `runtime.loading`.

Generation ends at the chat template's end of turn, at `max_tokens`, or as soon as the reply
holds one complete unit of the caller's `ReplyFormat` (for the agent: one action), checked on
the decoded text after every token. With a format grammar and llguidance installed, every token
is drawn from those the grammar allows (`runtime.grammar`).

Loaded models are cached per process (keyed by folder, adapter, device and dtype): the agent
builds several models in one run and a reload would cost a second or more each time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from learnagent.runtime import prompt
from learnagent.runtime.loading import attach_adapters, chat_prompt_ids, load_base
from learnagent.runtime.model import Completion, Message, ReplyFormat, StreamCut
from learnagent.runtime.placement import Placement, placement

_CACHE: dict[tuple, tuple] = {}  # (path, adapter, device, dtype) -> (model, tokenizer)
_CACHE_LOCK = threading.Lock()


def _load_cached(path: str, adapter_path: str | None, where: Placement):
    key = (path, adapter_path, where.device, where.dtype_name)
    with _CACHE_LOCK:
        if key not in _CACHE:
            model, tokenizer = load_base(path, where)
            if adapter_path is not None:
                model = attach_adapters(model, {Path(adapter_path).name: Path(adapter_path)}, base_path=path,
                                        where=where)
            _CACHE[key] = (model, tokenizer)
        return _CACHE[key]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class _Streamer(prompt.TextAssembler):
    """transformers' streamer interface over `TextAssembler`: `generate` pushes the prompt first."""

    def __init__(self, tokenizer, sink):
        super().__init__(tokenizer, sink)
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.push(int(token))

    def end(self) -> None:
        self.finish()


class TransformersModel:
    """A transformers model (optionally with a LoRA adapter) behind the `Model` protocol."""

    engine = "transformers"

    def __init__(self, path: str | Path, adapter_path: Path | None = None, adapter_version: str | None = None,
                 device: str | None = None, temperature: float = 0.0, seed: int = 0,
                 context_window: int | None = None, reply_format: ReplyFormat | None = None,
                 constrain: bool = True):
        folder = Path(path).expanduser()
        self.path = str(folder.resolve()) if folder.is_dir() else str(path)  # one cache key per folder
        self.placement = placement(device)
        self.device, self.dtype = self.placement.device, self.placement.dtype
        self.temperature = float(temperature)
        self.seed = int(seed)
        adapter = str(Path(adapter_path).resolve()) if adapter_path is not None else None
        self.model, self.tokenizer = _load_cached(self.path, adapter, self.placement)
        self.adapter_path = adapter
        self.adapter_version = (adapter_version or Path(adapter).name) if adapter else None
        self.name = f"local:{Path(self.path).name if Path(self.path).is_dir() else self.path}"
        self.context_window = int(context_window or prompt.context_window(self.model.config, self.tokenizer))
        self.stop_ids = prompt.stop_ids(self.model.generation_config, self.tokenizer)
        self.reply_format = reply_format
        self.grammar = None
        if constrain and reply_format is not None and reply_format.grammar:
            from learnagent.runtime import grammar

            self.grammar = grammar.for_tokenizer(reply_format.grammar, self.tokenizer, self.stop_ids,
                                                 self.model.config.vocab_size)
        self._calls = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ Model protocol

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        started = time.perf_counter()
        prompt_ids, truncation, max_new = prompt.budget(self.tokenizer, messages, max_tokens, self.context_window)
        cut = StreamCut(self.reply_format, on_text)
        streamer = _Streamer(self.tokenizer, cut.add)

        class _ReplyComplete(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # after the streamer saw the new token
                return torch.full((input_ids.shape[0],), cut.complete, dtype=torch.bool, device=input_ids.device)

        input_ids = torch.tensor([prompt_ids], device=self.device)
        kwargs = dict(max_new_tokens=max_new, eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                      streamer=streamer, stopping_criteria=StoppingCriteriaList([_ReplyComplete()]))
        constraint = self.grammar.start() if self.grammar is not None else None
        if constraint is not None:
            kwargs["logits_processor"] = LogitsProcessorList([constraint])
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if self.temperature > 0:  # reproducible sampling: one seed per call
                torch.manual_seed(self.seed + self._calls)
            self._calls += 1
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        generated = output[0, len(prompt_ids):].tolist()
        if cut.complete:
            text, reason = cut.text, "reply_complete"
        else:
            text = streamer.text()
            reason = "eos" if generated and generated[-1] in self.stop_ids else "max_tokens"
        extra = prompt.call_extra(self, reason, constraint, truncation)
        if not cut.complete and text != streamer.emitted:
            extra["stream_mismatch"] = True  # never seen with byte-level BPE; recorded if it happens
        return Completion(text=text, prompt_tokens=len(prompt_ids), completion_tokens=len(generated),
                          duration_s=time.perf_counter() - started, extra=extra)

    # ------------------------------------------------------------ prompt building

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return chat_prompt_ids(self.tokenizer, messages)

    def fit_prompt(self, messages: list[Message], budget: int) -> tuple[list[int], dict | None]:
        return prompt.fit_prompt(self.tokenizer, messages, budget)
