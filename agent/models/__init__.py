"""Which model the agent runs: the config's spec turned into a `runtime` engine (or the scripted
test model), with the repository's promoted adapter and the action format as its reply format."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from learnagent.core.config import ModelConfig
from learnagent.runtime.model import Completion, Message, Model


PromotedAdapter = Callable[[], "tuple[str, Path] | None"]


def load_model(cfg: ModelConfig, *, promoted: PromotedAdapter | None = None, repo_key: str | None = None,
               adapter: str | None = "auto", on_info=None) -> Model:
    """Build the model a config names. `promoted`: the repository's promoted adapter as (version,
    folder) or None, asked by the caller's layer (services: the registry's pointer file); with
    `adapter="auto"` it is loaded (a local engine) or named per request (`served_adapters`, keyed by
    `repo_key`). `adapter` as a path loads that folder; None loads none."""
    from learnagent.agent.actions import reply_format
    from learnagent.core.modelhub import resolve_model

    backend, target = resolve_model(cfg.name)
    if backend == "scripted":
        from learnagent.agent.models.scripted import ScriptedModel

        return ScriptedModel.from_file(target)
    auto = adapter == "auto" and cfg.use_adapter and promoted is not None
    if backend == "litellm":
        from learnagent.runtime.engine_litellm import LiteLLMModel

        by_name = adapter_by_name(target, promoted, repo_key) if auto and cfg.served_adapters else None
        return LiteLLMModel(target, temperature=cfg.temperature, reply_format=reply_format(),
                            model_for_request=by_name)
    from learnagent.runtime.engines import open_local

    adapter_path, adapter_version = None, None
    if auto:
        found = promoted()
        if found:
            adapter_version, adapter_path = found
    elif adapter not in (None, "auto"):
        adapter_path, adapter_version = Path(adapter), Path(adapter).name
    if on_info:
        on_info(f"adapter {adapter_version}" if adapter_version else "no adapter (none promoted yet)")
    return open_local(target, adapter_path=adapter_path, adapter_version=adapter_version,
                      temperature=cfg.temperature, reply_format=reply_format(), engine=cfg.engine,
                      constrain=cfg.grammar)


def adapter_by_name(target: str, promoted: PromotedAdapter, repo_key: str | None):
    """For a server that holds this repository's adapters by name (`[model] served_adapters`):
    a function giving, at each request, the model name to send and the adapter it selects. The
    promoted pointer is read every time (`promoted`: a small file), so `sleep`'s promotion and
    `adapters rollback` reach the next request without a restart. No adapter promoted: the base's name."""
    from learnagent.runtime.export import served_name

    provider, _, _base = target.rpartition("/")

    def pick() -> tuple[str, str | None]:
        found = promoted()
        if found is None:
            return target, None
        name = served_name(repo_key, found[0])
        return (f"{provider}/{name}" if provider else name), found[0]

    return pick


__all__ = ["Completion", "Message", "Model", "PromotedAdapter", "load_model"]
