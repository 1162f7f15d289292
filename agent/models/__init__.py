"""Which model the agent runs: the config's spec turned into a `runtime` engine (or the scripted
test model), with the repository's promoted adapter and the action format as its reply format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from learnagent.core.config import ModelConfig
from learnagent.runtime.model import Completion, Message, Model


PromotedAdapter = Callable[[], "tuple[str, Path] | None"]


@dataclass(frozen=True)
class TeamAdapter:
    """The team's served adapter of a repository joined to a team (`services.team.team_adapter`
    decides it): `server` the team's `learnagent serve` (…/v1), `key` the repository's team name,
    `version` the team's promoted version there (None: the base, for the reason in `note`)."""

    server: str
    key: str
    version: str | None
    note: str = ""


def load_model(cfg: ModelConfig, *, promoted: PromotedAdapter | None = None, repo_key: str | None = None,
               adapter: str | None = "auto", on_info=None, team: TeamAdapter | None = None) -> Model:
    """Build the model a config names. `promoted`: the repository's promoted adapter as (version,
    folder) or None, asked by the caller's layer (services: the registry's pointer file); with
    `adapter="auto"` it is loaded (a local engine) or named per request (`served_adapters`, keyed by
    `repo_key`). `adapter` as a path loads that folder; None loads none. `team`: a repository joined
    to a team whose user set `[team] serve`: a local model on engine auto/serve runs on the team's
    server with the team's adapter instead (`team_model`)."""
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
    if team is not None and cfg.engine in ("auto", "serve") and adapter in ("auto", None):
        return team_model(team, cfg, Path(target), use_adapter=adapter == "auto" and cfg.use_adapter, on_info=on_info)
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
    _count_with(model, server.base_folder)
    if on_info:
        on_info(f"learnagent serve at {server.url} ({server.engine}), "
                + (f"adapter {model.adapter_version}" if model.adapter_version else "no adapter"))
    return model


def _count_with(model, base_folder: str | Path) -> None:
    """Count a served model's tokens with the base's own tokenizer (the repo map's budget, and the
    token counts of a server that streams no usage)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    model.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def team_model(team: TeamAdapter, cfg: ModelConfig, local_base: Path, *, use_adapter: bool, on_info=None) -> Model:
    """The model through the team's `learnagent serve`: its base, and with the adapter on, the team's
    promoted adapter of the repository by its served name (fixed for this run: the version is the
    one the team store named when the run began). Recorded per model call as engine `serve:team` and
    adapter `team:<version>`, so a team adapter is never taken for the laptop's own of that number.
    A team with no promoted adapter, or a server without it, is one line and the base."""
    from learnagent.agent.actions import reply_format
    from learnagent.core.errors import LearnagentError
    from learnagent.runtime.engine_litellm import LiteLLMModel
    from learnagent.runtime.export import served_name
    from learnagent.runtime.serving import listed_models, served_base

    try:
        models = listed_models(team.server)
    except LearnagentError as exc:  # one line, naming the setting that points there
        raise LearnagentError(f"[team] serve: {exc}") from None
    base = served_base(models, prefer=local_base.name)
    if base is None:
        raise LearnagentError(f"the team's learnagent serve at {team.server} lists no base model (it lists: "
                              f"{', '.join(models) or 'nothing'})")
    version, note = (team.version, team.note) if use_adapter else (None, "the adapter is off")
    if version is not None and served_name(team.key, version) not in models:
        version, note = None, (f"the team server does not hold {team.key} {team.version} "
                               f"({served_name(team.key, team.version)})")
    chosen = f"openai/{served_name(team.key, version) if version else base}"
    label = f"team:{version}" if version else None
    model = LiteLLMModel(chosen, temperature=cfg.temperature, api_base=team.server, api_key="learnagent-serve",
                         reply_format=reply_format(), model_for_request=lambda: (chosen, label))
    model.engine, model.name = "serve:team", f"local:{base}"
    if local_base.name == base and local_base.is_dir():
        _count_with(model, local_base)
    if on_info:
        on_info(f"team server {team.server}: {team.key} adapter {version}" if version
                else f"team server {team.server}: {team.key} runs on the base ({base}): {note}")
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


__all__ = ["Completion", "Message", "Model", "PromotedAdapter", "TeamAdapter", "load_model"]
