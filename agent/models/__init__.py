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
    from learnagent.runtime.engines import open_local, running_server

    server = running_server(target, cfg.engine) if adapter in ("auto", None) else None
    if server is not None:  # a `learnagent serve` holds this base and the adapters by name
        return served_model(server, cfg, promoted=promoted, repo_key=repo_key, adapter=adapter, on_info=on_info)
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


def served_model(server, cfg: ModelConfig, *, promoted: PromotedAdapter | None, repo_key: str | None,
                 adapter: str | None, on_info=None) -> Model:
    """The model through a running `learnagent serve` (`runtime.serving.ServerInfo`): the base by
    its name, and with the adapter on, the repository's promoted adapter by name at each request.
    It is the same local model as in-process (name, so prompts and examples; the base's tokenizer,
    so the repo map's budget and the token counts a server that sends no usage leaves out)."""
    from transformers import AutoTokenizer

    from learnagent.agent.actions import reply_format
    from learnagent.runtime.engine_litellm import LiteLLMModel
    from learnagent.runtime.serving import ensure_adapter

    target = f"openai/{server.base_name}"
    by_name = None
    if adapter == "auto" and cfg.use_adapter and promoted is not None and repo_key is not None:
        found = promoted()
        if found:  # promoted before this server started (or another repository's server): load it now
            ensure_adapter(server, repo_key, *found)
        by_name = adapter_by_name(target, promoted, repo_key)
    model = LiteLLMModel(target, temperature=cfg.temperature, api_base=server.url, api_key="learnagent-serve",
                         reply_format=reply_format(), model_for_request=by_name)
    model.engine, model.name = f"serve:{server.engine}", f"local:{server.base_name}"
    tokenizer = AutoTokenizer.from_pretrained(server.base_folder)
    model.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if on_info:
        on_info(f"learnagent serve at {server.url} ({server.engine}), "
                + (f"adapter {model.adapter_version}" if model.adapter_version else "no adapter"))
    return model


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
