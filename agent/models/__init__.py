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

        return LiteLLMModel(target, temperature=cfg.temperature, reply_format=reply_format())
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


def promoted_adapter(repo_root: Path):
    """(version, folder) of the repo's promoted adapter, or None."""
    from learnagent.learning.registry import promoted_adapter as _promoted

    return _promoted(repo_root)


__all__ = ["Completion", "Message", "Model", "load_model", "promoted_adapter"]
