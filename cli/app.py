"""The `learnagent` command. Each area registers its own commands; heavy libraries load lazily."""

from __future__ import annotations

import importlib
import signal
import sqlite3
import sys

import typer

from learnagent.core.errors import LearnagentError

app = typer.Typer(
    name="learnagent",
    help="A terminal coding agent that learns the codebase it works in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that add commands through `register(app)`, in the order they appear in --help.
COMMAND_MODULES = [
    "learnagent.cli.do_cmd",  # init, do, apply
    "learnagent.cli.log_cmds",  # log, show
    "learnagent.cli.outcome_cmds",  # hook, hooks, accept, reject, status, history, review
    "learnagent.cli.learn_cmds",  # sleep, eval, report, adapters
    "learnagent.cli.privacy_cmds",  # forget, logs, gc
    "learnagent.cli.model_cmd",  # model install/info
]


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True)):
    if version:
        from learnagent import __version__

        typer.echo(f"learnagent {__version__}")
        raise typer.Exit()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: let it surface
                raise
            continue  # that area is not part of this build yet
        module.register(app)


_register_all()


def _fail(message: str, code: int) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _terminate(signum, frame):
    # `kill` (SIGTERM) ends a run like Ctrl-C: the episode is marked interrupted and its worktree removed
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rv = app(standalone_mode=False)  # returns the code of a typer.Exit instead of exiting
    except LearnagentError as exc:
        _fail(str(exc), exc.exit_code)
    except sqlite3.DatabaseError as exc:  # damaged after it was opened (a check at open catches the rest)
        from learnagent.core.home import db_path
        from learnagent.store.db import damaged

        _fail(str(damaged(db_path(), str(exc))), 1)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
