"""The litellm engine: any provider litellm speaks (OpenAI, Anthropic, Ollama, an OpenAI-compatible
vLLM or llama.cpp server such as `learnagent serve`).

Replies are always streamed, so the engine can stop reading as soon as the reply holds one
complete unit of its `ReplyFormat` (one action) whatever the provider; the format's stop
sequences (the closing tags of actions with a body) are also sent, so a server stops generating
by itself, and the one that fired is put back (OpenAI-style servers drop it from the text).

`model_for_request` is asked before every request: `learnagent serve` users get the
repository's promoted adapter by model name, read at each call, so a promotion or a rollback
takes effect at the next step without a restart.

`import litellm` is slow (~6 s) and by default fetches a price map from the network, so it is
imported here, lazily, with LITELLM_LOCAL_MODEL_COST_MAP set first.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from learnagent.runtime.model import Completion, Message, ReplyFormat, StreamCut
from learnagent.core.errors import LearnagentError


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


class LiteLLMModel:
    engine = "litellm"

    def __init__(self, model: str, temperature: float = 0.0, api_base: str | None = None, timeout: float = 600,
                 reply_format: ReplyFormat | None = None,
                 model_for_request: Callable[[], tuple[str, str | None]] | None = None, api_key: str | None = None):
        self.name = f"litellm:{model}"
        self.model = model
        self.adapter_version = None
        self.temperature = temperature
        self.api_base = api_base or os.environ.get("LEARNAGENT_API_BASE")
        self.timeout = timeout
        self.api_key = api_key  # None: litellm reads the provider's variable
        self.reply_format = reply_format
        self.model_for_request = model_for_request  # () -> (model name to send, adapter version)
        if model_for_request is not None:
            self.adapter_version = model_for_request()[1]

    def complete(self, messages: list[Message], *, max_tokens: int,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        completion = _litellm().completion
        model, adapter = self.model, self.adapter_version
        if self.model_for_request is not None:
            model, adapter = self.model_for_request()
            self.adapter_version = adapter
        kwargs = dict(model=model, messages=messages, max_tokens=max_tokens, temperature=self.temperature,
                      timeout=self.timeout, stream=True, stream_options={"include_usage": True})
        stops = list(self.reply_format.stop_sequences) if self.reply_format else []
        if stops:
            kwargs["stop"] = stops[:4]  # OpenAI accepts at most 4
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        cut = StreamCut(self.reply_format, on_text)
        start = time.perf_counter()
        usage, finish = None, None
        try:
            response = completion(**kwargs)
            for chunk in response:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                if chunk.choices:
                    finish = chunk.choices[0].finish_reason or finish
                    delta = chunk.choices[0].delta.content or ""
                    if delta and cut.add(delta):
                        break  # one complete action: stop reading (the server stops on disconnect)
            if hasattr(response, "close"):
                response.close()
        except Exception as exc:  # provider errors come in many classes; the user needs one line
            raise LearnagentError(f"{self.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        text, reason = cut.text, "reply_complete" if cut.complete else (finish or "unknown")
        if not cut.complete and finish == "stop" and self.reply_format is not None:
            restored = self.reply_format.restore_stop(text)
            if restored != text:  # a stop sequence fired: the server dropped the closing tag
                if on_text is not None:
                    on_text(restored[len(text):])
                text, reason = restored, "stop_sequence"
        prompt_tokens = getattr(usage, "prompt_tokens", None) or self.count_tokens("".join(m["content"] for m in messages))
        completion_tokens = getattr(usage, "completion_tokens", None) or self.count_tokens(text)
        extra = {"engine": self.engine, "adapter": adapter, "stop_reason": reason, "request_model": model}
        if self.api_base:
            extra["api_base"] = self.api_base
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          duration_s=time.perf_counter() - start, cost_usd=self._cost(prompt_tokens, completion_tokens),
                          extra=extra)

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
