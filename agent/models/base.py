"""The model interface every backend implements (local transformers, litellm, scripted)."""

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
    extra: dict = field(default_factory=dict)


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
