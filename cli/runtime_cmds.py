"""`learnagent adapters export` (a repository adapter in the format of the engine a user runs) and
`learnagent serve` (an OpenAI-compatible server for the base and the repository's adapters).

`export` joins the `adapters` group that `learn_cmds` registers (so `adapters list|use|rollback|export`
read as one group). Heavy libraries (gguf, numpy, safetensors, llama_cpp, uvicorn) load inside the
commands only.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from learnagent.core.errors import LearnagentError, UsageError


def registry_adapter(repo, version: str) -> tuple[Path, str]:
    """(folder, base model spec) of a complete adapter of `repo` (a Repository); one-line errors otherwise."""
    from learnagent.learning.registry import LINEAGE, is_complete

    folder = repo.adapters_dir / version
    if not is_complete(folder):
        raise UsageError(f"no adapter '{version}' for this repository (see `learnagent adapters list`)")
    try:
        spec = json.loads((folder / LINEAGE).read_text()).get("base_model")
    except (OSError, ValueError):
        spec = None
    if not spec:
        raise UsageError(f"{folder / LINEAGE} does not name the base model {version} was trained on")
    return folder, spec


def local_base(spec: str) -> Path:
    """The local folder of a base model spec (exports need its config, and llama.cpp its GGUF)."""
    from learnagent.core.modelhub import resolve_model

    backend, target = resolve_model(spec)
    if backend != "local" or not Path(target).is_dir():
        raise UsageError(f"the adapter's base '{spec}' is not a local model folder; cannot export it")
    return Path(target)


def adapters_export(
    version: str = typer.Argument(..., metavar="VERSION", help="The adapter version, e.g. v0003."),
    fmt: str = typer.Option("peft", "--format", metavar="peft|gguf|ollama",
                            help="peft: the PEFT folder (vLLM, transformers); gguf: a GGUF LoRA (llama.cpp); "
                                 "ollama: the GGUF LoRA and a Modelfile."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder to write into (created if missing)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
):
    """Write an adapter for another engine, and print the command that serves it."""
    from rich.console import Console

    from learnagent.runtime.export import FORMATS, export

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    from learnagent.agent.worktree import find_repo
    from learnagent.runtime.export import served_name

    repo = find_repo(need_branch=False).repository
    folder, spec = registry_adapter(repo, version)
    base = local_base(spec)
    # the name `do` asks a server for when `[model] served_adapters` is on
    done = export(folder, version, base, fmt, out, name=served_name(repo.key, version))
    if as_json:
        print(json.dumps({"format": done.format, "out": str(done.out_dir.resolve()),
                          "files": [str(f.resolve()) for f in done.files], "serve": done.serve_command,
                          "note": done.note}, indent=2))
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"exported {version} ({done.format}) to {done.out_dir.resolve()}:")
    for f in done.files:
        console.print(f"  {f.name}  ({f.stat().st_size:,} bytes)")
    console.print("serve it with:")
    console.print(f"  {done.serve_command}", markup=False)
    if done.note:
        console.print(done.note, markup=False)


def served_adapters(repo, base: Path, engine: str, say) -> dict[str, Path]:
    """The promoted adapter of `repo` (a Repository, or a StoredRepository of a team store) and its
    promotion history (what a rollback returns to), read from its PROMOTED pointer on this machine,
    as the server loads them: served name -> GGUF LoRA (llama.cpp) or PEFT folder (vLLM). An adapter
    of another base or with damaged files is left out with a line saying why."""
    from learnagent.learning.registry import is_complete, read_pointer
    from learnagent.runtime.export import gguf_lora_for, served_name

    pointer = read_pointer(repo.adapters_dir) or {"version": None, "history": []}
    out: dict[str, Path] = {}
    for version in [*pointer["history"], pointer["version"]]:
        folder = repo.adapters_dir / str(version)
        if not version or not is_complete(folder):
            continue
        try:
            out[served_name(repo.key, version)] = (
                folder if engine == "vllm" else gguf_lora_for(folder, base, version=version))
        except LearnagentError as exc:
            say(f"not serving {repo.key} {version}: {exc}")
    return out


def stored_repositories(store_url: str | None, names: list[str], say) -> list:
    """The repositories `serve --store URL [--repo NAME]...` serves: those named (one-line errors as
    `sleep --store` gives them), else every repository of the store. A repository whose promoted
    row in the store has no adapter folder on this machine (trained on another box) gets a line."""
    from learnagent.cli.learn_cmds import _open_stored
    from learnagent.learning.registry import promoted_adapter

    if names:
        repos, store = [], None
        for name in dict.fromkeys(names):
            if store is not None:
                store.close()
            store, repo = _open_stored(store_url, name)
            repos.append(repo)
    else:
        from learnagent.store.db import parse_target
        from learnagent.store.episodes import Store

        target = parse_target(store_url, "--store") if store_url else None
        if isinstance(target, Path) and not target.is_file():
            raise UsageError(f"--store {target}: no such store file")
        store = Store(target)
        repos = [store.find_stored_repo(key) for key in store.repo_ids()]
    with store:
        for repo in repos:
            promoted = store.adapters(repo.key, status="promoted")
            if promoted and promoted_adapter(repo) is None:
                say(f"not serving {repo.key} {promoted[0].version}: its adapter is not on this machine "
                    f"({repo.adapters_dir}; trained on another box?)")
    return repos


def serve(
    engine: str = typer.Option("auto", "--engine", metavar="auto|llama.cpp|vllm",
                               help="auto: vLLM when it is installed and a CUDA GPU is there, else llama.cpp."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="Address to listen on (loopback by default: the server has no authentication)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", help="Port (0: any free port)."),
    threads: int = typer.Option(0, "--threads", metavar="N", help="llama.cpp threads (0: all cores)."),
    model: str = typer.Option("", "--model", metavar="SPEC",
                              help="The base model (default: the repository's configured local model, else the "
                                   "embedded one; with --store: your own config's, else the embedded one)."),
    store_url: str = typer.Option(None, "--store", metavar="URL",
                                  help="Serve the repositories of this (team) store with their adapters on this "
                                       "machine, no checkout needed (the team's GPU box: docs/TEAM.md)."),
    repo_names: list[str] = typer.Option(None, "--repo", metavar="NAME",
                                         help="With --store: only this repository (repeatable); default: all of "
                                              "them. Without --store: the configured store's."),
):
    """Serve the base model and this repository's adapters (or a team store's: --store) over an
    OpenAI-compatible API; `do` uses it."""
    from rich.console import Console

    from learnagent.core.config import load_config
    from learnagent.core.modelhub import resolve_model
    from learnagent.runtime import serving

    console = Console(highlight=False, soft_wrap=True, stderr=True)
    say = lambda line: console.print(line, markup=False)  # noqa: E731
    chosen = serving.choose_serve_engine(engine)
    if store_url is not None or repo_names:
        repos = stored_repositories(store_url, list(repo_names or []), say)  # no checkout: the store's
        spec, what = model or load_config(None).model.name, f"of {len(repos)} repositories of the store"
    else:
        from learnagent.agent.worktree import find_repo
        from learnagent.core.errors import NotAGitRepo

        try:
            repos = [find_repo(need_branch=False).repository]  # the repository, resolved once here
        except NotAGitRepo as exc:
            raise type(exc)(f"{exc}; or serve a team store's repositories: --store URL") from None
        spec, what = model or load_config(repos[0].work_tree).model.name, "of this repository"
    if not model and resolve_model(spec)[0] != "local":
        spec = ""  # the config names a remote model (perhaps this server): serve the embedded default
    base = local_base(spec or "smollm2")
    running = serving.running()
    if running is not None:
        raise UsageError(f"a learnagent serve is already running at {running.url} (pid {running.pid})")
    adapters = {name: path for repo in repos for name, path in served_adapters(repo, base, chosen, say).items()}

    def ready(info) -> None:
        say(f"serving {info.base_name} and {len(adapters)} adapter(s) {what} at {info.url} ({chosen})")
        for name in sorted(adapters):
            say(f"  {name}")
        say("`learnagent do` uses it while it runs ([model] engine = auto or serve); promotions and rollbacks "
            "load into it without a restart. Ctrl-C stops it.")

    if chosen == "vllm":
        from learnagent.runtime.export import _rank

        rank = max([_rank(folder) for folder in adapters.values()] or [16])
        serving.serve_vllm(base, adapters, host=host, port=port, max_rank=rank, on_ready=ready)
        return
    from learnagent.runtime.engines import gguf_of

    gguf = gguf_of(base)
    if gguf is None:
        raise UsageError(f"{base} has no GGUF for llama.cpp (run `learnagent model install --force`)")
    try:
        serving.serve_llamacpp(base, gguf, adapters, host=host, port=port, n_threads=threads or None, on_ready=ready)
    except KeyboardInterrupt:
        pass
    say("stopped")


def register(app: typer.Typer) -> None:
    from learnagent.cli.learn_cmds import adapters_app

    adapters_app.command("export")(adapters_export)
    app.command("serve")(serve)
