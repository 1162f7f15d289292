"""Model backends behind one Protocol (`base.Model`): local transformers, litellm, scripted."""

from __future__ import annotations

from pathlib import Path

from learnagent.agent.models.base import Completion, Message, Model
from learnagent.core.config import ModelConfig


def load_model(cfg: ModelConfig, repo_root: Path | None = None, *, adapter: str | None = "auto",
               on_info=None) -> Model:
    """Build the model a config names. `adapter="auto"` loads the repo's promoted adapter, if any."""
    from learnagent.core.modelhub import resolve_model

    backend, target = resolve_model(cfg.name)
    if backend == "scripted":
        from learnagent.agent.models.scripted import ScriptedModel

        return ScriptedModel.from_file(target)
    if backend == "litellm":
        from learnagent.agent.models.litellm_model import LiteLLMModel

        return LiteLLMModel(target, temperature=cfg.temperature)
    from learnagent.agent.models.local import LocalModel

    adapter_path, adapter_version = None, None
    if adapter == "auto" and cfg.use_adapter and repo_root is not None:
        found = promoted_adapter(repo_root)
        if found:
            adapter_version, adapter_path = found
    elif adapter not in (None, "auto"):
        adapter_path, adapter_version = Path(adapter), Path(adapter).name
    if on_info:
        on_info(f"adapter {adapter_version}" if adapter_version else "no adapter (none promoted yet)")
    return LocalModel(target, adapter_path=adapter_path, adapter_version=adapter_version,
                      temperature=cfg.temperature)


def promoted_adapter(repo_root: Path):
    """(version, folder) of the repo's promoted adapter, or None."""
    from learnagent.learning.registry import promoted_adapter as _promoted

    return _promoted(repo_root)


__all__ = ["Completion", "Message", "Model", "load_model", "promoted_adapter"]
