"""The `learnagent` command. Each area registers its own commands; heavy libraries load lazily."""

from __future__ import annotations

import importlib
import os
import signal
import sqlite3
import sys

import typer

from learnagent.core.errors import LearnagentError

PROG = "learnagent"

app = typer.Typer(
    name=PROG,
    help="A terminal coding agent that learns the codebase it works in.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish, PowerShell; offline
    pretty_exceptions_enable=False,
)

# Modules that add commands through `register(app)`, in the order they appear in --help.
COMMAND_MODULES = [
    "learnagent.cli.do_cmd",  # init, do, apply
    "learnagent.cli.log_cmds",  # log, show
    "learnagent.cli.outcome_cmds",  # hook, hooks, accept, reject, status, history, review
    "learnagent.cli.learn_cmds",  # sleep, eval, report, adapters
    "learnagent.cli.runtime_cmds",  # adapters export (after learn_cmds: it joins its adapters group)
    "learnagent.cli.privacy_cmds",  # forget, logs, gc
    "learnagent.cli.team_cmds",  # push, team
    "learnagent.cli.model_cmd",  # model install/info
]


def _print_version(value: bool) -> None:
    # a parse-time callback: it runs before click asks for the missing command
    if value:
        from learnagent import __version__

        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       expose_value=False, callback=_print_version)):
    pass


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


def _tidy_help(command) -> None:
    """typer >= 0.2x labels every parameter with its Python type (`<bool>`, `<str>`). Show nothing
    for a flag (it takes no value) and otherwise the name of what is expected: the metavar the
    option declares (SPEC, FILE, N), else its name in capitals as click does; choices stay as
    typer lists them. Older typer (real click) prints no types, and this changes nothing there."""
    params = list(command.params)
    if hasattr(command, "get_help_option") and hasattr(command, "context_class"):
        help_option = command.get_help_option(command.context_class(command, info_name=command.name))
        if help_option is not None and help_option not in params:
            params.append(help_option)  # typer._click caches it, so the help screen shows this one
    for param in params:
        if getattr(param, "is_flag", False):
            if param.metavar is None:
                param.metavar = ""
            continue
        if getattr(getattr(param, "type_descriptor", None), "is_choice", False):
            continue
        if param.metavar is None:
            param.metavar = (param.name or "value").upper()
        if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None  # its name column already says what it is
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def build_command(typer_app: typer.Typer | None = None):
    """The click command behind `app`, with tidy help (what `main` runs; tests inspect it)."""
    command = typer.main.get_command(typer_app or app)
    _tidy_help(command)
    return command


def _fail(message: str, code: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    one_line = " ".join(str(message).split())
    Console(stderr=True).print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _click_errors() -> tuple[type, ...]:
    """ClickException classes of every click in this process: typer's own copy (`typer._click`,
    typer >= 0.2x) and click itself where something imported it (older typer). A click that was
    never imported raised nothing, so nothing is imported here."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "ClickException"):
            found.append(module.ClickException)
    return tuple(found)


def _abort_errors() -> tuple[type, ...]:
    found = [typer.Abort]
    click_exceptions = sys.modules.get("click.exceptions")
    if click_exceptions is not None and hasattr(click_exceptions, "Abort"):
        found.append(click_exceptions.Abort)
    return tuple(found)


def _usage_error(exc) -> None:
    """A click usage error as one line, with where to look: `error: No such option: --jsn (Possible
    options: --json); see learnagent log --help`. Exit 2, the documented code for bad input."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `learnagent` or `learnagent model` alone: the help
        exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message().rstrip(".")
    if ctx is not None and getattr(ctx, "command_path", ""):
        message += f"; see {ctx.command_path} --help"
    _fail(message, exc.exit_code)


def _terminate(signum, frame):
    # `kill` (SIGTERM) ends a run like Ctrl-C: the episode is marked interrupted and its worktree removed
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    run(app, argv)


def _honour_explicit_completion_shell(argv: list[str]) -> None:
    """`--show-completion bash` / `--install-completion bash` when the shell cannot be detected.

    typer makes both options plain flags while shellingham can find the calling shell among the
    parent processes, and then ignores a shell named after them; with no shell among the parents
    (run from a script whose shell already exited, cron, an IDE) it printed "Shell  not supported."
    and exited 1 although the user named the shell. typer reads this variable when it builds the
    options (at every `get_command`), and then takes the shell as the option's value."""
    if not {"--show-completion", "--install-completion"} & set(argv):
        return
    import shellingham  # typer's own dependency; only imported for these two options

    try:
        shellingham.detect_shell()
    except shellingham.ShellDetectionFailure:
        os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"


def run(typer_app: typer.Typer, argv: list[str] | None = None, prog_name: str = PROG) -> None:
    """Run a typer app as `learnagent` does: failures as one line and their exit code, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    _honour_explicit_completion_shell(sys.argv[1:] if argv is None else argv)
    try:
        rv = build_command(typer_app).main(args=argv, prog_name=prog_name, standalone_mode=False)  # typer.Exit codes
    except LearnagentError as exc:
        _fail(str(exc), exc.exit_code)
    except sqlite3.DatabaseError as exc:  # after the store was opened: "damaged" only if a check says so
        from learnagent.core.home import db_path
        from learnagent.store.db import store_error

        _fail(str(store_error(db_path(), str(exc))), 1)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors and the like
        if isinstance(exc, _abort_errors()):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        if isinstance(exc, _click_errors()):
            if hasattr(exc, "ctx"):  # UsageError and its kinds (no such option, bad value, missing argument)
                _usage_error(exc)
            _fail(exc.format_message(), exc.exit_code)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
