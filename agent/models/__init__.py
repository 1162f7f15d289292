"""Which model the agent runs: the config's spec turned into a `runtime` engine (or the scripted
test model), with the repository's promoted adapter and the action format as its reply format."""

from __future__ import annotations

from pathlib import Path

from learnagent.core.config import ModelConfig
from learnagent.runtime.model import Completion, Message, Model


def load_model(cfg: ModelConfig, repo_root: Path | None = None, *, adapter: str | None = "auto",
               on_info=None) -> Model:
    """Build the model a config names. `adapter="auto"` loads the repo's promoted adapter, if any."""
    from learnagent.agent.actions import reply_format
    from learnagent.core.modelhub import resolve_model

    backend, target = resolve_model(cfg.name)
    if backend == "scripted":
        from learnagent.agent.models.scripted import ScriptedModel

        return ScriptedModel.from_file(target)
    if backend == "litellm":
        from learnagent.runtime.engine_litellm import LiteLLMModel

        by_name = None
        if cfg.served_adapters and cfg.use_adapter and adapter == "auto" and repo_root is not None:
            by_name = adapter_by_name(target, repo_root)
        return LiteLLMModel(target, temperature=cfg.temperature, reply_format=reply_format(),
                            model_for_request=by_name)
    from learnagent.runtime.engines import open_local, running_server

    server = running_server(target, cfg.engine) if adapter in ("auto", None) else None
    if server is not None:  # a `learnagent serve` holds this base and the adapters by name
        return served_model(server, cfg, repo_root, adapter=adapter, on_info=on_info)
    adapter_path, adapter_version = None, None
    if adapter == "auto" and cfg.use_adapter and repo_root is not None:
        found = promoted_adapter(repo_root)
        if found:
            adapter_version, adapter_path = found
    elif adapter not in (None, "auto"):
        adapter_path, adapter_version = Path(adapter), Path(adapter).name
    if on_info:
        on_info(f"adapter {adapter_version}" if adapter_version else "no adapter (none promoted yet)")
    return open_local(target, adapter_path=adapter_path, adapter_version=adapter_version,
                      temperature=cfg.temperature, reply_format=reply_format(), engine=cfg.engine,
                      constrain=cfg.grammar)


def served_model(server, cfg: ModelConfig, repo_root: Path | None, *, adapter: str | None, on_info=None) -> Model:
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
    if adapter == "auto" and cfg.use_adapter and repo_root is not None:
        found = promoted_adapter(repo_root)
        if found:  # promoted before this server started (or another repository's server): load it now
            ensure_adapter(server, repo_root, *found)
        by_name = adapter_by_name(target, repo_root)
    model = LiteLLMModel(target, temperature=cfg.temperature, api_base=server.url, api_key="learnagent-serve",
                         reply_format=reply_format(), model_for_request=by_name)
    model.engine, model.name = f"serve:{server.engine}", f"local:{server.base_name}"
    tokenizer = AutoTokenizer.from_pretrained(server.base_folder)
    model.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if on_info:
        on_info(f"learnagent serve at {server.url} ({server.engine}), "
                + (f"adapter {model.adapter_version}" if model.adapter_version else "no adapter"))
    return model


def adapter_by_name(target: str, repo_root: Path):
    """For a server that holds this repository's adapters by name (`[model] served_adapters`):
    a function giving, at each request, the model name to send and the adapter it selects. The
    promoted pointer is read every time (a small file), so `sleep`'s promotion and `adapters
    rollback` reach the next request without a restart. No adapter promoted: the base's name."""
    from learnagent.core.home import repo_key
    from learnagent.runtime.export import served_name

    provider, _, _base = target.rpartition("/")
    key = repo_key(repo_root)

    def pick() -> tuple[str, str | None]:
        found = promoted_adapter(repo_root)
        if found is None:
            return target, None
        name = served_name(key, found[0])
        return (f"{provider}/{name}" if provider else name), found[0]

    return pick


def promoted_adapter(repo_root: Path):
    """(version, folder) of the repo's promoted adapter, or None."""
    from learnagent.learning.registry import promoted_adapter as _promoted

    return _promoted(repo_root)


__all__ = ["Completion", "Message", "Model", "load_model", "promoted_adapter"]
