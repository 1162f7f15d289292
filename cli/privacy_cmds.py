"""`learnagent forget`, `learnagent logs on|off|status`, `learnagent gc`."""

from __future__ import annotations

import datetime as dt
import sys
from typing import List, Optional

import typer

from learnagent.core.errors import UsageError


def _repo_root():
    from learnagent.agent.worktree import find_repo

    return find_repo(need_branch=False).root


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def forget(
    episodes: Optional[List[str]] = typer.Argument(None, metavar="IDS", help="Episode ids (or unique prefixes) to forget."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE", help="Forget this repository's episodes "
                                        "started on or after DATE: 2024-05-01 (local midnight), 2024-05-01T14:30, "
                                        "or what `git log --since` reads (\"2 weeks ago\", yesterday)."),
    everything: bool = typer.Option(False, "--all", help="Forget every episode of this repository."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
):
    """Delete episodes for good (conversation, tool output, tests, outcomes) and taint adapters trained on them."""
    from rich.console import Console

    from learnagent.core import home
    from learnagent.core.dates import parse_since
    from learnagent.store import privacy
    from learnagent.store.episodes import Store

    if not episodes and since is None and not everything:
        raise UsageError("say what to forget: episode ids, --since DATE, or --all (see `learnagent log`)")
    since_ts = parse_since(since) if since is not None else None
    repo_id = home.repo_key(_repo_root()) if (since_ts is not None or everything) else None
    console = Console()
    with Store() as store:
        chosen = privacy.select_episodes(store, repo_id=repo_id, ids=list(episodes or []), since=since_ts,
                                         everything=everything)
        if not chosen:
            console.print("Nothing to forget: no episode matches.")
            return
        console.print(f"About to forget {len(chosen)} episode(s):")
        for ep in chosen[:10]:
            console.print(f"  {ep['id']}  {_when(ep['started_at'])}  {ep['task'][:60]}", highlight=False,
                          markup=False)
        if len(chosen) > 10:
            console.print(f"  … and {len(chosen) - 10} more")
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("not asking without a terminal: add --yes to forget these episodes")
            if not typer.confirm("Delete them for good?", default=False):
                console.print("Nothing forgotten.")
                raise typer.Exit(1)
        result = privacy.forget(store, chosen)
    console.print(f"Forgot {len(result.episodes)} episode(s).")
    if result.removed_worktrees or result.removed_branches:
        console.print(f"Removed {len(result.removed_worktrees)} worktree(s) and "
                      f"{len(result.removed_branches)} branch(es).")
    if result.kept_branches:
        console.print("Left the branches you kept: " + ", ".join(result.kept_branches), markup=False)
    if result.tainted_adapters:
        versions = ", ".join(v for _, v in result.tainted_adapters)
        console.print(f"Adapters trained on them are marked tainted ({versions}); the next `learnagent sleep` "
                      "retrains without them.")


logs_app = typer.Typer(help="Pause or resume recording episodes in this repository.", no_args_is_help=True)


@logs_app.command("off")
def logs_off():
    """Stop recording: `do` still works but stores nothing for this repository."""
    _set_logs(False)


@logs_app.command("on")
def logs_on():
    """Record episodes again (the default)."""
    _set_logs(True)


@logs_app.command("status")
def logs_status():
    """Say whether episodes are recorded in this repository."""
    from learnagent.store.episodes import Store
    from learnagent.store.privacy import recording_enabled

    root = _repo_root()
    with Store() as store:
        on = recording_enabled(store, store.ensure_repo(root))
    typer.echo(f"recording is {'on' if on else 'off'} for {root}")


def _set_logs(enabled: bool) -> None:
    from learnagent.store.episodes import Store
    from learnagent.store.privacy import set_recording

    root = _repo_root()
    with Store() as store:
        set_recording(store, store.ensure_repo(root), enabled)
    if enabled:
        typer.echo(f"recording is on for {root}")
    else:
        typer.echo(f"recording is off for {root}: `learnagent do` runs but stores nothing (learnagent logs on "
                   "to resume)")


def gc(dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would be removed; change nothing.")):
    """Remove worktrees and branches of finished or dead episodes (never a live run or one you kept)."""
    from rich.console import Console
    from rich.table import Table

    from learnagent.core.gc import collect
    from learnagent.store.episodes import Store

    root = _repo_root()
    with Store() as store:
        items = collect(store, root, dry_run=dry_run)
    console = Console()
    if not items:
        console.print("Nothing to clean up.")
        return
    table = Table(title="would remove" if dry_run else "removed", header_style="bold")
    for col in ("episode", "what", "target", "why"):
        table.add_column(col, overflow="fold")
    for item in items:
        what = "mark" if item.what == "episode" else item.what
        status = "" if dry_run or item.done else " (failed)"
        table.add_row(item.episode_id, what + status, item.target, item.reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
    app.add_typer(logs_app, name="logs")
    app.command("gc")(gc)
