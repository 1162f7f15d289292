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
    from learnagent.runtime.engines import open_local

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
