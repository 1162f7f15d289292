"""The llama.cpp engine: the model's original GGUF run in-process by llama-cpp-python (optional
extra `learnagent[llama]`), with the repository's adapter as a GGUF LoRA.

Same prompt as the transformers engine, token for token: the conversation goes through the
model folder's tokenizer and chat template (`runtime.prompt`, the GGUF's own vocabulary and
template as `learnagent model install` converted them) and llama.cpp gets the token ids.
Decoding is llama.cpp's; the engine reads one token at a time, so it stops at the end of turn, at
`max_tokens`, or as soon as the reply holds one complete action, and (with llguidance) masks
each step's logits to the reply grammar. llama.cpp keeps the KV cache of the longest common
prefix between calls, so an agent step only evaluates the new turns.

The adapter is exported to `adapter.gguf` next to its PEFT weights on first use (milliseconds
for a LoRA of this size) and re-exported when the weights are newer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from learnagent.core.errors import ModelNotFound
from learnagent.runtime import prompt
from learnagent.runtime.engines import LLAMA_HINT, gguf_of
from learnagent.runtime.model import Completion, Message, ReplyFormat, StreamCut

_CACHE: dict[tuple, object] = {}  # (gguf, lora gguf, n_ctx, threads) -> Llama
_CACHE_LOCK = threading.Lock()
MAX_CONTEXT = 8192  # KV cache size cap: the agent's prompts stay well below it


def load_llama(gguf: Path, lora: Path | None, n_ctx: int, n_threads: int | None = None, seed: int = 0):
    """A (cached) llama_cpp.Llama for `gguf` with the GGUF LoRA `lora` applied at scale 1."""
    try:
        import llama_cpp
    except ImportError:
        raise ModelNotFound(f"llama-cpp-python is not installed: {LLAMA_HINT}") from None
    threads = int(n_threads or os.cpu_count() or 1)
    key = (str(gguf), str(lora) if lora else None, n_ctx, threads)
    with _CACHE_LOCK:
        if key not in _CACHE:
            try:
                _CACHE[key] = llama_cpp.Llama(model_path=str(gguf), lora_path=str(lora) if lora else None,
                                              n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                              seed=seed, verbose=False)
            except (ValueError, RuntimeError) as exc:
                what = f"{gguf}" + (f" with LoRA {lora}" if lora else "")
                raise ModelNotFound(f"llama.cpp cannot load {what}: {str(exc).splitlines()[0]}") from None
        return _CACHE[key]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class LlamaCppModel:
    """A GGUF model (optionally with a LoRA adapter) run by llama.cpp behind the `Model` protocol."""

    engine = "llama.cpp"

    def __init__(self, path: str | Path, adapter_path: Path | None = None, adapter_version: str | None = None,
                 temperature: float = 0.0, seed: int = 0, context_window: int | None = None,
                 reply_format: ReplyFormat | None = None, constrain: bool = True, n_threads: int | None = None):
        from transformers import AutoConfig, AutoTokenizer

        from learnagent.runtime.export import gguf_lora_for

        folder = Path(path).expanduser().resolve()
        gguf = gguf_of(folder)
        if gguf is None:
            raise ModelNotFound(f"{folder} has no GGUF for llama.cpp (run `learnagent model install --force`)")
        self.path, self.gguf = str(folder), gguf
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        config = AutoConfig.from_pretrained(str(folder))
        self.context_window = int(context_window or prompt.context_window(config, self.tokenizer))
        self.lora = gguf_lora_for(Path(adapter_path), folder) if adapter_path is not None else None
        self.adapter_path = str(Path(adapter_path).resolve()) if adapter_path is not None else None
        self.adapter_version = (adapter_version or Path(adapter_path).name) if adapter_path is not None else None
        self.llm = load_llama(gguf, self.lora, min(self.context_window, MAX_CONTEXT), n_threads, seed)
        self.context_window = min(self.context_window, MAX_CONTEXT)
        self.name = f"local:{folder.name}"
        self.device = "cpu"
        self.temperature = float(temperature)
        self.seed = int(seed)
        from transformers import GenerationConfig

        try:
            generation = GenerationConfig.from_pretrained(str(folder))
        except OSError:
            generation = None
        self.stop_ids = prompt.stop_ids(generation, self.tokenizer)
        self.reply_format = reply_format
        self.grammar = None
        if constrain and reply_format is not None and reply_format.grammar:
            from learnagent.runtime import grammar

            self.grammar = grammar.for_tokenizer(reply_format.grammar, self.tokenizer, self.stop_ids,
                                                 self.llm.n_vocab())
        self._calls = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit_prompt(self, messages: list[Message], budget: int):
        return prompt.fit_prompt(self.tokenizer, messages, budget)

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        started = time.perf_counter()
        prompt_ids, truncation, max_new = prompt.budget(self.tokenizer, messages, max_tokens, self.context_window)
        cut = StreamCut(self.reply_format, on_text)
        text_out = prompt.TextAssembler(self.tokenizer, cut.add)
        constraint = self.grammar.start() if self.grammar is not None else None
        processors = None
        if constraint is not None:
            import numpy as np
            from llama_cpp import LogitsProcessorList

            def mask(_input_ids, scores):
                if constraint.error is None:
                    scores[~constraint.allowed()[:scores.shape[-1]]] = -np.inf
                return scores

            processors = LogitsProcessorList([mask])
        sampling = (dict(temp=self.temperature, top_k=0, top_p=1.0, min_p=0.0) if self.temperature > 0
                    else dict(temp=0.0))
        reason, generated = "max_tokens", 0
        with self._lock:
            if self.temperature > 0:
                self.llm.set_seed(self.seed + self._calls)
            self._calls += 1
            for token in self.llm.generate(prompt_ids, repeat_penalty=1.0, logits_processor=processors,
                                           reset=True, **sampling):
                if token in self.stop_ids:
                    reason, generated = "eos", generated + 1  # counted, as transformers counts it
                    break
                generated += 1
                if constraint is not None:
                    constraint.advance(token)
                text_out.push(token)
                if cut.complete:
                    reason = "reply_complete"
                    break
                if generated >= max_new:
                    break
        text_out.finish()
        text = cut.text if cut.complete else text_out.text()
        extra = prompt.call_extra(self, reason, constraint, truncation)
        if self.lora is not None:
            extra["lora"] = self.lora.name
        return Completion(text=text, prompt_tokens=len(prompt_ids), completion_tokens=generated,
                          duration_s=time.perf_counter() - started, extra=extra)
