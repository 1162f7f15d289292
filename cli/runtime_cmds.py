"""`learnagent adapters export`: a repository adapter in the format of the engine a user runs.

Added to the `adapters` group that `learn_cmds` registers (so `adapters list|use|rollback|export`
read as one group). Heavy libraries (gguf, numpy, safetensors) load inside the command only.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from learnagent.core.errors import UsageError


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


def register(app: typer.Typer) -> None:
    from learnagent.cli.learn_cmds import adapters_app

    adapters_app.command("export")(adapters_export)
