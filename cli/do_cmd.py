"""`learnagent init`, `learnagent do`, `learnagent apply`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from learnagent.core.errors import LearnagentError, UsageError


def init(
    model: Optional[str] = typer.Option(None, "--model", metavar="SPEC", help="Model spec (smollm2, litellm:PROVIDER/MODEL, local:PATH, scripted:FILE)."),
    test_command: Optional[str] = typer.Option(None, "--test-command", metavar="CMD", help="The repository's test command (detected if omitted)."),
    hooks: bool = typer.Option(True, "--hooks/--no-hooks", help="Install the git hooks that record outcomes."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing configuration."),
):
    """Write this repository's learnagent configuration and install its git hooks."""
    from learnagent.agent import worktree as wt
    from learnagent.core import config as cfgmod

    repo = wt.find_repo(need_branch=False)
    path = cfgmod.config_path(repo.root)
    warnings: list[str] = []
    if path.exists() and not force:  # keep what the file sets; leave the rest to the user's config
        cfg, keep, created = cfgmod.load_config(repo.root, user=False), cfgmod.repo_settings(repo.root), False
    else:
        cfg, keep, created = cfgmod.Config(), set(), True
    if model:
        from learnagent.core.modelhub import resolve_model

        resolve_model(model)  # unknown specs fail here, not at the first `do`
        cfg.model.name = model
        keep.add(("model", "name"))
        try:
            _check_credentials(model)
        except UsageError as exc:  # not fatal here: the key may be set later, before `do`
            warnings.append(str(exc).replace("; nothing was run", " before `learnagent do`"))
    if test_command is not None:
        cfg.test.command = test_command
    elif created or not cfg.test.command:
        cfg.test.command = cfgmod.detect_test_command(repo.root)
    keep.add(("test", "command"))
    cfgmod.save_config(repo.root, cfg, keep=keep)
    wt.exclude_learnagent_files(repo.repository)
    effective = cfgmod.load_config(repo.root)  # what `do` will use: the user's config included
    source = cfgmod.setting_source(repo.root, "model", "name")
    table = Table(show_header=False, box=None)
    table.add_row("config", str(path) + ("" if created else " (updated)"))
    where = {str(path): "", "default": f" [dim](the default; yours goes in {cfgmod.user_config_path()})[/]"}
    table.add_row("model", effective.model.name + where.get(source, f" [dim](from {source})[/]"))
    table.add_row("tests", cfg.test.command or "[yellow]none found — set one with --test-command[/]")
    test_env = _test_env_rows(table, repo.root, effective)
    table.add_row("budgets", f"{effective.budgets.max_steps} steps, {effective.budgets.max_tokens} tokens, "
                  f"{effective.budgets.max_seconds}s")
    if hooks:
        from learnagent.core.githooks import install_hooks

        done = install_hooks(repo.root)
        table.add_row("hooks", ", ".join(done) if done else "already installed")
    for warning in warnings:
        table.add_row("[yellow]warning[/]", warning)
    Console().print(table)
    if test_env is not None and test_env.warning:
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(test_env.warning)}", highlight=False, soft_wrap=True)


def _test_env_rows(table: Table, root: Path, cfg):
    """The 'python' row: which interpreter the tests run with (a Python test command only)."""
    from learnagent.core.testenv import resolve_test_env, uses_python

    if not uses_python(cfg.test.command):
        return None
    env = resolve_test_env(root, cfg.test.python)
    table.add_row("python", escape(env.describe()) if not env.warning else f"[yellow]{escape(env.describe())}[/]")
    return env


def do(
    task: str = typer.Argument(..., metavar="TASK", help="What the agent should do."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="SPEC", help="Model spec; overrides the repo config."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept without asking: apply the result to your working tree."),
    no_apply: bool = typer.Option(False, "--no-apply", help="Do not apply; keep the branch for later."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, metavar="N", help="Stop after N agent steps (default: budgets.max_steps in the config)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, metavar="N", help="Stop after N prompt + completion tokens."),
    max_seconds: Optional[int] = typer.Option(None, "--max-seconds", min=1, metavar="SECONDS", help="Stop after this much wall time."),
    no_tests: bool = typer.Option(False, "--no-tests", help="Run without a test command."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", metavar="auto|require|none", help="Run the agent's commands under bubblewrap if it works here (auto), always (require), or never (none)."),
    allow_network: bool = typer.Option(False, "--allow-network", help="Let the agent's commands use the network."),
    no_adapter: bool = typer.Option(False, "--no-adapter", help="Do not load the repo's promoted adapter."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not stream the model's text."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON at the end."),
):
    """Run the agent on TASK in its own worktree, test, show the diff, and ask what to do with it."""
    from learnagent.agent import worktree as wt
    from learnagent.cli.display import ClosableConsole, silence_stdout
    from learnagent.services import run_task as service
    from learnagent.services.run_task import EXIT_OUTPUT_CLOSED  # `do`'s exit codes live there
    from learnagent.store.episodes import Store, new_episode_id

    if yes and no_apply:
        raise UsageError("--yes and --no-apply contradict each other; give one")
    if not task.strip():
        raise UsageError("the task is empty: say what the agent should do, e.g. learnagent do \"fix the failing test\"")
    if sandbox is not None and sandbox not in ("auto", "require", "none"):
        raise UsageError(f"--sandbox must be auto, require or none (not '{sandbox}')")
    console = ClosableConsole(stderr=as_json)
    repo = wt.find_repo()
    cfg = service.task_config(repo.root, model=model, no_adapter=no_adapter, max_steps=max_steps,
                              max_tokens=max_tokens, max_seconds=max_seconds, sandbox=sandbox,
                              allow_network=allow_network, no_tests=no_tests)
    _check_credentials(cfg.model.name)
    try:
        test_env, lm = _preamble(console, repo, cfg, no_tests)
    except BrokenPipeError:  # the output closed before any episode began: nothing to record or clean
        silence_stdout()
        raise typer.Exit(EXIT_OUTPUT_CLOSED) from None
    ids = [new_episode_id()]  # the id proposed, then the one the store gave (the same unless it was taken)
    view = DoView(console, yes=yes, no_apply=no_apply, quiet=quiet)
    with Store() as store:
        try:
            done = service.run_task(store, repo, task, cfg, lm, view, episode_id=ids[0], run_tests=not no_tests,
                                    test_env=test_env, on_episode_id=ids.append)
        except (KeyboardInterrupt, BrokenPipeError) as exc:
            raise typer.Exit(_interrupted(store, repo, ids[-1], exc)) from None
    if as_json:
        result = done.result
        try:
            print(json.dumps({"episode": result.episode_id, "status": result.status, "verdict": done.verdict,
                              "tests_passed": None if result.test is None else result.test.passed,
                              "changed_files": result.changed_files, "steps": result.steps, "tokens": result.tokens}))
            sys.stdout.flush()
        except BrokenPipeError:  # decided already: nothing to clean up
            silence_stdout()
            raise typer.Exit(EXIT_OUTPUT_CLOSED) from None
    raise typer.Exit(done.exit_code)


def _preamble(console, repo, cfg, no_tests):
    """What `do` says before the run (test environment, model, sandbox, uncommitted changes), and
    the loaded model; returns (test environment or None, model)."""
    from learnagent.services.run_task import open_model

    test_env = None
    if cfg.test.command and not no_tests:
        from learnagent.core.testenv import resolve_test_env

        test_env = resolve_test_env(repo.root, cfg.test.python)  # a bad [test] python fails here, silently
    # the model first: a bad spec or a missing file is one error line with nothing said before it
    lm = open_model(cfg.model, repo.repository, on_info=lambda msg: console.print(f"[dim]{msg}[/]"))
    console.print(f"[bold]learnagent[/] · {lm.name}" + (f" + adapter {lm.adapter_version}" if lm.adapter_version else "")
                  + f" · {repo.root.name}@{repo.branch}")
    console.print(f"[dim]sandbox:[/] {_sandbox_state(cfg.sandbox)}", highlight=False)
    if test_env is not None:
        from learnagent.core.testenv import uses_python

        if uses_python(cfg.test.command):
            console.print(f"[dim]tests: {escape(cfg.test.command)} · {escape(test_env.describe())}[/]", highlight=False,
                          soft_wrap=True)
            if test_env.warning:
                console.print(f"[yellow]warning:[/] {escape(test_env.warning)}", highlight=False, soft_wrap=True)
    unseen = _uncommitted(repo.root)
    if unseen:
        shown = ", ".join(unseen[:3]) + (f" and {len(unseen) - 3} more" if len(unseen) > 3 else "")
        console.print(f"[yellow]note:[/] your uncommitted changes ({shown}) are invisible to the agent: it works on "
                      f"a checkout of HEAD ({repo.head[:10]}); accepting merges its work into your working tree",
                      highlight=False)
    return test_env, lm


def _check_credentials(spec: str) -> None:
    """A litellm model whose provider key is not set: one line now, not a provider error at step 1."""
    from learnagent.core.modelhub import resolve_model

    backend, target = resolve_model(spec)
    if backend != "litellm":
        return
    from learnagent.runtime.engine_litellm import missing_credentials

    missing = missing_credentials(target)
    if missing:
        names = " and ".join(missing)
        raise UsageError(f"{spec} needs {names} in the environment (export {missing[0]}=...); nothing was run")


def _sandbox_state(sandbox_cfg) -> str:
    """What `Sandbox` will do with this config, said before the run (it decides the same way)."""
    from learnagent.sandbox import runner

    if sandbox_cfg.mode == "none":
        return "[yellow]off[/] (mode none): the agent's commands run as you, with network"
    if runner.bwrap_available():
        return "on (bubblewrap; " + ("[yellow]network allowed[/])" if sandbox_cfg.network else "no network)")
    if sandbox_cfg.mode == "require":
        return "required, but bubblewrap cannot run here"  # Sandbox refuses with the way out
    return "[yellow]off[/]: bubblewrap is not usable here (install it; see the warning below)"


def _uncommitted(root: Path) -> list[str]:
    """Paths with changes git has not committed (staged, unstaged, untracked; not ignored)."""
    from learnagent.agent import worktree as wt

    out = wt.git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    paths, records = [], out.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        if len(record) > 3:
            paths.append(record[3:])
            if record[0] in "RC":  # a rename or copy: the next record is its source
                i += 1
        i += 1
    return paths


class DoView:
    """What `do` shows while the agent runs and after, and the verdict it asks for (services.run_task.TaskView)."""

    def __init__(self, console, *, yes: bool, no_apply: bool, quiet: bool):
        from learnagent.cli.display import LiveObserver

        self.console, self.yes, self.no_apply = console, yes, no_apply
        self.observer = LiveObserver(console, stream_model=not quiet)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]note:[/] {message}")

    def show_result(self, result) -> None:
        from learnagent.cli.display import show_diff, show_test

        self.console.rule("[bold]result")
        show_diff(self.console, result.diff)
        show_test(self.console, result.test)
        if result.status == "budget_exceeded":
            self.console.print(f"[yellow]The agent ran out of budget: {result.summary}[/]")
        else:
            self.console.print(f"[bold]Agent:[/] {result.summary}")

    def verdict(self, result) -> str:
        return _verdict(self.console, result, self.yes, self.no_apply)

    def applied(self, files: list[str]) -> None:
        self.console.print(f"[green]Applied to your working tree:[/] {', '.join(files) or 'no files'} "
                           "(review with git diff; commit when happy)")

    def conflict(self, exc: Exception) -> None:
        self.console.print(f"[red]{exc}[/]")

    def rejected(self) -> None:
        self.console.print("Rejected; the episode folder and branch are removed.")

    def kept(self, result) -> None:
        self.console.print(f"Kept on branch [bold]{result.branch}[/] (apply later: learnagent apply {result.episode_id})")

    def finished(self, result) -> None:
        self.console.print(f"[dim]episode {result.episode_id}{'' if result.recorded else ' (not recorded)'} · "
                           f"{result.steps} steps · {result.tokens} tokens[/]")


def _interrupted(store, repo, episode_id: str, exc: BaseException) -> int:
    """Ctrl-C, SIGTERM (see cli/app.py) or closed output anywhere in `do`: the episode is recorded as
    interrupted and its folder and branch removed (services.run_task.interrupted); one line on stderr."""
    from learnagent.cli.display import silence_stdout
    from learnagent.services.run_task import interrupted

    if isinstance(exc, BrokenPipeError):
        silence_stdout()
    code = interrupted(store, repo, episode_id, exc)
    try:
        print(f"interrupted, episode {episode_id}", file=sys.stderr, flush=True)
    except OSError:
        pass
    return code


def _verdict(console: Console, result, yes: bool, no_apply: bool) -> str:
    if not result.diff.strip():
        return "none"
    if yes:
        # an agent that ran out of budget left unfinished work: never apply that unasked
        return "keep" if result.status == "budget_exceeded" else "accept"
    if no_apply:
        return "keep"
    if not sys.stdin.isatty():
        console.print("[dim]no terminal to ask on: keeping the branch[/]")
        return "keep"
    from rich.prompt import Prompt

    answer = Prompt.ask("Apply to your working tree? [bold]a[/]ccept / [bold]r[/]eject / [bold]k[/]eep branch",
                        choices=["a", "r", "k"], default="k", console=console)
    return {"a": "accept", "r": "reject", "k": "keep"}[answer]


def apply(episode: str = typer.Argument(..., metavar="ID", help="Episode id (or a unique prefix) whose kept branch to apply.")):
    """Apply a kept episode's branch to your working tree (3-way merge; refuses on conflict)."""
    from learnagent.agent import run as runner
    from learnagent.agent import worktree as wt
    from learnagent.store.episodes import Store

    repo = wt.find_repo(need_branch=False)
    with Store() as store:
        ep = store.get_episode(store.resolve_id(episode))
        if ep.outcome != "kept":
            raise LearnagentError(f"episode {ep.id} is {ep.outcome}, not kept; only a kept branch can be applied")
        if Path(ep.repo_path).resolve() != repo.root.resolve():
            raise LearnagentError(f"episode {ep.id} belongs to {ep.repo_path}, not this repository")
        console = Console()
        files = runner.accept(store, repo.repository, runner.Proposal.of_episode(ep),
                              on_note=lambda m: console.print(f"[yellow]note:[/] {m}"))
        store.set_outcome(ep.id, "pending", "applied from kept branch")
    console.print(f"[green]Applied:[/] {', '.join(files) or 'no files'}")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(do)
    app.command()(apply)
