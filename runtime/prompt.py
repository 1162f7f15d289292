"""The prompt a local engine feeds its model: the chat template over the conversation, cut to fit.

Shared by the transformers and llama.cpp engines, so both see the same token ids for the same
conversation (the llama.cpp engine tokenizes with the converted folder's tokenizer, which holds
the GGUF's vocabulary and chat template).
"""

from __future__ import annotations

from typing import Callable

from learnagent.runtime.loading import chat_prompt_ids

END_OF_TURN = "<|im_end|>"  # ChatML's end of turn (SmolLM2, Qwen, the tiny test model)
TRUNCATION_NOTE = "[earlier text truncated to fit the model's context window]\n"


def fit_prompt(tokenizer, messages: list[dict], budget: int) -> tuple[list[int], dict | None]:
    """The prompt within `budget` tokens: drop the oldest turns after the system message, then
    cut the oldest text of the last message; returns (ids, what was cut or None)."""
    ids = chat_prompt_ids(tokenizer, messages)
    if len(ids) <= budget:
        return ids, None
    before = len(ids)
    head = [messages[0]] if messages and messages[0].get("role") == "system" else []
    rest = list(messages[len(head):])
    dropped = 0
    while len(rest) > 1 and len(ids) > budget:
        rest.pop(0)
        dropped += 1
        ids = chat_prompt_ids(tokenizer, head + rest)
    cut = 0
    if len(ids) > budget and rest:
        last = dict(rest[-1])
        content = tokenizer(str(last.get("content") or ""), add_special_tokens=False)["input_ids"]
        note = len(tokenizer(TRUNCATION_NOTE, add_special_tokens=False)["input_ids"])
        overflow = len(ids) - budget + note + 2
        for _ in range(4):  # re-tokenising the cut text can differ by a few tokens: retry
            keep = content[min(len(content), overflow):]
            cut = len(content) - len(keep)
            last["content"] = TRUNCATION_NOTE + tokenizer.decode(keep)
            ids = chat_prompt_ids(tokenizer, head + rest[:-1] + [last])
            if len(ids) <= budget or not keep:
                break
            overflow += len(ids) - budget + 4
    if len(ids) > budget:  # the system message alone is too long: keep the newest tokens
        ids = ids[len(ids) - budget:]
    return ids, {"dropped_messages": dropped, "cut_tokens": cut, "prompt_tokens_before": before,
                 "budget": budget}


def budget(tokenizer, messages: list[dict], max_tokens: int, window: int) -> tuple[list[int], dict | None, int]:
    """What a local engine feeds and may generate: (prompt ids, what was cut or None, max new tokens).
    The reply keeps up to half the window; the prompt is fitted into the rest."""
    from learnagent.core.errors import LearnagentError

    if max_tokens < 1:
        raise LearnagentError(f"max_tokens must be at least 1 (got {max_tokens})")
    ids, truncation = fit_prompt(tokenizer, messages, window - min(max_tokens, window // 2))
    return ids, truncation, max(1, min(max_tokens, window - len(ids)))


def call_extra(model, reason: str, constraint=None, truncation: dict | None = None) -> dict:
    """What a local engine records with a reply (`Completion.extra`): engine, adapter, device, why
    it stopped, the grammar applied (and any error of it), what was cut from the prompt."""
    extra = {"engine": model.engine, "adapter": model.adapter_version, "device": model.device, "stop_reason": reason}
    if constraint is not None:
        extra["grammar"] = model.grammar.library
        if constraint.error:
            extra["grammar_error"] = constraint.error
    if truncation:
        extra["truncated"] = truncation
    return extra


def context_window(config, tokenizer) -> int:
    window = getattr(config, "max_position_embeddings", None) or 2048
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < window:
        window = tok_max
    return int(window)


def stop_ids(generation_config, tokenizer) -> list[int]:
    """Token ids that end a reply: the generation config's EOS, the tokenizer's, the chat end of turn."""
    ids = set()
    gen_eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.add(end)
    return sorted(ids)


class TextAssembler:
    """Token ids in, complete new text out (to `sink`), as a local engine generates.

    It decodes the whole completion so far on each token and forwards the new suffix, holding
    back a trailing U+FFFD (half of a multi-byte character), so what `sink` receives concatenates
    to exactly the final decoded text.
    """

    def __init__(self, tokenizer, sink: Callable[[str], object] | None):
        self.tokenizer = tokenizer
        self.sink = sink
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token: int) -> None:
        self.ids.append(int(token))
        self._flush(final=False)

    def finish(self) -> None:
        self._flush(final=True)

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _flush(self, final: bool) -> None:
        full = self.text()
        if not final and full.endswith("\ufffd"):
            return
        if full.startswith(self.emitted) and len(full) > len(self.emitted):
            piece, self.emitted = full[len(self.emitted):], full
            if self.sink is not None:
                self.sink(piece)
