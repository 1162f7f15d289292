"""Any provider litellm speaks (OpenAI, Anthropic, Ollama, an OpenAI-compatible vLLM server, ...).

`import litellm` is slow (~6 s) and by default fetches a price map from the network, so it is
imported here, lazily, with LITELLM_LOCAL_MODEL_COST_MAP set first.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from learnagent.agent.models.base import Completion, Message
from learnagent.core.errors import LearnagentError


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


class LiteLLMModel:
    def __init__(self, model: str, temperature: float = 0.0, api_base: str | None = None, timeout: float = 600):
        self.name = f"litellm:{model}"
        self.model = model
        self.adapter_version = None
        self.temperature = temperature
        self.api_base = api_base or os.environ.get("LEARNAGENT_API_BASE")
        self.timeout = timeout

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        completion = _litellm().completion
        kwargs = dict(model=self.model, messages=messages, max_tokens=max_tokens, temperature=self.temperature,
                      timeout=self.timeout, stream=on_text is not None)
        if on_text is not None:
            kwargs["stream_options"] = {"include_usage": True}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        start = time.perf_counter()
        try:
            response = completion(**kwargs)
            if on_text is None:
                text = response.choices[0].message.content or ""
                usage = getattr(response, "usage", None)
            else:
                chunks, usage = [], None
                for chunk in response:
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    if chunk.choices:
                        delta = chunk.choices[0].delta.content or ""
                        if delta:
                            chunks.append(delta)
                            on_text(delta)
                text = "".join(chunks)
        except Exception as exc:  # provider errors come in many classes; the user needs one line
            raise LearnagentError(f"{self.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        prompt_tokens = getattr(usage, "prompt_tokens", None) or self.count_tokens("".join(m["content"] for m in messages))
        completion_tokens = getattr(usage, "completion_tokens", None) or self.count_tokens(text)
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          duration_s=time.perf_counter() - start, cost_usd=self._cost(prompt_tokens, completion_tokens))

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        try:
            p, c = _litellm().cost_per_token(model=self.model, prompt_tokens=prompt_tokens,
                                             completion_tokens=completion_tokens)
            return float(p + c)
        except Exception:  # unknown price (local servers): cost unknown, recorded as 0
            return 0.0

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4) if text else 0


def missing_credentials(model: str) -> list[str]:
    """The credential variables litellm needs for `model` and does not find in the environment
    (`litellm.validate_environment`), so a run can refuse before it starts instead of failing at its
    first step. Only keys and tokens: a missing *_API_BASE has a default for the providers that
    need none (Ollama's localhost). An OpenAI-compatible server (LEARNAGENT_API_BASE) still wants
    OPENAI_API_KEY set through litellm, to any value if the server checks none."""
    try:
        report = _litellm().validate_environment(model=model)
    except Exception:  # an unknown provider: litellm reports it at the first call
        return []
    return [key for key in report.get("missing_keys") or [] if not key.endswith(("_API_BASE", "_BASE_URL"))]
