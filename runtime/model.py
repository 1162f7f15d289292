"""The model interface every engine implements, and what a reply must look like.

`Model` is what the agent loop talks to (transformers in-process, llama.cpp in-process, any
OpenAI-compatible server through litellm, the scripted test model). `ReplyFormat` is how the
caller tells an engine what one complete reply is, without the runtime knowing the agent's
action format: where a reply may end (a function over the text so far), the stop sequences a
server can apply, and a grammar (Lark, as llguidance reads it) a local engine may decode under.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    cost_usd: float = 0.0
    extra: dict = field(default_factory=dict)  # engine, stop_reason, device, grammar, truncation, ...


@dataclass(frozen=True)
class ReplyFormat:
    """What a complete reply is.

    - `reply_end(text)`: the index just past the first complete unit (e.g. one action) in
      `text`, or None while it is not complete yet; engines stop generating there.
    - `stop_sequences`: strings after which a server may stop (they are not returned by
      OpenAI-style servers: `restore_stop(text)` puts the one that fired back).
    - `grammar`: a Lark grammar (llguidance's dialect) that every reply must match, or None.
    """

    reply_end: Callable[[str], int | None]
    stop_sequences: tuple[str, ...] = ()
    restore_stop: Callable[[str], str] = lambda text: text
    grammar: str | None = None
    name: str = "reply"


@runtime_checkable
class Model(Protocol):
    name: str  # what the episode records as its model
    adapter_version: str | None  # the LoRA adapter it runs with, None for none

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        """Answer the conversation. `on_text` receives text as it is produced (for live display)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` for this model (an estimate where the backend has no tokenizer)."""
        ...


class StreamCut:
    """Collects streamed text and says when the reply holds one complete unit of `fmt`.

    Used by every engine that produces text piece by piece: `add(piece)` returns True once the
    reply is complete; `text` is then cut just after the unit (what came after it in the same
    token — a newline, the start of a second action — is dropped), and `emitted` is the part
    forwarded to `on_text` (it never runs past the cut).
    """

    def __init__(self, fmt: ReplyFormat | None, on_text: Callable[[str], None] | None = None):
        self.fmt = fmt
        self.on_text = on_text
        self.raw = ""
        self.cut_at: int | None = None

    def add(self, piece: str) -> bool:
        if self.cut_at is not None:
            return True
        before = len(self.raw)
        self.raw += piece
        if self.fmt is not None:
            end = self.fmt.reply_end(self.raw)
            if end is not None:
                self.cut_at = end
        shown = self.raw[before:self.cut_at] if self.cut_at is not None else piece
        if shown and self.on_text is not None:
            self.on_text(shown)
        return self.cut_at is not None

    @property
    def text(self) -> str:
        return self.raw if self.cut_at is None else self.raw[:self.cut_at]

    @property
    def complete(self) -> bool:
        return self.cut_at is not None
