"""A deterministic model that replays responses from a file (docs/SCRIPTED_MODEL.md).

Used by the end-to-end tests and for reproducible demos: `--model scripted:FILE`.
The file is JSON: either a list of responses, or {"responses": [...]} where each response
is a string, or {"text": str, "when": REGEX} to answer only when the last user message
matches (otherwise the next unconditional response is used).
"""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path
from typing import Callable

from learnagent.runtime.model import Completion, Message
from learnagent.core.errors import ModelNotFound, UsageError


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class ScriptedModel:
    engine = "scripted"

    def __init__(self, responses: list, name: str = "scripted"):
        self.name = name
        self.adapter_version = None
        self.responses = [_normalise(r, i) for i, r in enumerate(responses)]
        self.calls = 0

    @classmethod
    def from_file(cls, spec: str) -> "ScriptedModel":
        path = Path(spec)
        if not path.exists():  # a demo shipped in the package: scripted:demo-NAME
            shipped = resources.files("learnagent.agent").joinpath("demos", f"{spec}.json")
            if not shipped.is_file():
                raise ModelNotFound(f"scripted model file not found: {spec}")
            text, label = shipped.read_text(), spec
        else:
            text, label = path.read_text(), path.name
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"scripted model file {spec} is not valid JSON: {exc}") from None
        responses = data.get("responses") if isinstance(data, dict) else data
        if not isinstance(responses, list) or not responses:
            raise UsageError(f"scripted model file {spec} must hold a non-empty list of responses")
        return cls(responses, name=f"scripted:{label}")

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        start = time.perf_counter()
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        text = self._pick(last_user)
        if on_text:
            on_text(text)
        prompt = "".join(m["content"] for m in messages)
        return Completion(text=text, prompt_tokens=_approx_tokens(prompt), completion_tokens=_approx_tokens(text),
                          duration_s=time.perf_counter() - start,
                          extra={"engine": self.engine, "adapter": self.adapter_version, "stop_reason": "scripted"})

    def _pick(self, last_user: str) -> str:
        for i, resp in enumerate(self.responses):
            if resp["used"]:
                continue
            if resp["when"] is None or re.search(resp["when"], last_user):
                resp["used"] = True
                self.calls += 1
                return resp["text"]
        self.calls += 1
        # Out of script: finish, so a short script can never loop until the budget runs out.
        return "<finish>scripted model: script exhausted</finish>"

    def count_tokens(self, text: str) -> int:
        return _approx_tokens(text)


def _normalise(item, index: int) -> dict:
    if isinstance(item, str):
        return {"text": item, "when": None, "used": False}
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        when = item.get("when")
        if when is not None:
            try:
                re.compile(when)
            except re.error as exc:
                raise UsageError(f"scripted response {index}: bad 'when' regex: {exc}") from None
        return {"text": item["text"], "when": when, "used": False}
    raise UsageError(f"scripted response {index} must be a string or an object with 'text'")
