"""`learnagent forget`, `learnagent logs on|off|status`, `learnagent gc`."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import List, Optional

import typer

from learnagent.core.errors import UsageError


def _repo():
    """The repository of the current folder (a Repository; it must have a first commit)."""
    from learnagent.agent.worktree import find_repo

    return find_repo(need_branch=False).repository


def _repo_root():
    return _repo().work_tree


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

    from learnagent.core.dates import parse_since
    from learnagent.services.forget import forget as forget_episodes
    from learnagent.store import privacy
    from learnagent.store.episodes import Store

    if not episodes and since is None and not everything:
        raise UsageError("say what to forget: episode ids, --since DATE, or --all (see `learnagent log`)")
    since_ts = parse_since(since) if since is not None else None
    repo_id = _repo().key if (since_ts is not None or everything) else None
    console = Console()
    with Store() as store:
        chosen = privacy.select_episodes(store, repo_id=repo_id, ids=list(episodes or []), since=since_ts,
                                         everything=everything)
        if not chosen:
            console.print("Nothing to forget: no episode matches.")
            return
        console.print(f"About to forget {len(chosen)} episode(s):")
        for ep in chosen[:10]:
            console.print(f"  {ep.id}  {_when(ep.started_at)}  {ep.task[:60]}", highlight=False,
                          markup=False)
        if len(chosen) > 10:
            console.print(f"  … and {len(chosen) - 10} more")
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("not asking without a terminal: add --yes to forget these episodes")
            if not typer.confirm("Delete them for good?", default=False):
                console.print("Nothing forgotten.")
                raise typer.Exit(1)
        _forget_on_team_store(chosen)  # first: if the team store cannot be reached, nothing is forgotten yet
        result = forget_episodes(store, chosen)
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


def _forget_on_team_store(chosen) -> None:
    """With a team store configured ([team] url), forget the user's own pushed copies there too."""
    from learnagent.core.config import user_settings

    if not user_settings("team")[0].url:
        return
    from learnagent.services import team
    from learnagent.store.episodes import Store
    from learnagent.store.gitutil import git

    author = git(_repo_root(), "config", "user.email", check=False).strip() or None
    with Store(team.team_url(None)) as shared:
        gone = team.forget_on_team(shared, [ep.id for ep in chosen], author)
    if gone:
        typer.echo(f"Forgot {len(gone)} of them on the team store too.")


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

    repo = _repo()
    with Store() as store:
        on = store.recording_enabled(store.ensure_repo(repo))
    typer.echo(f"recording is {'on' if on else 'off'} for {repo.work_tree}")


def _set_logs(enabled: bool) -> None:
    from learnagent.store.episodes import Store

    repo = _repo()
    root = repo.work_tree
    with Store() as store:
        store.set_recording(store.ensure_repo(repo), enabled)
    if enabled:
        typer.echo(f"recording is on for {root}")
    else:
        typer.echo(f"recording is off for {root}: `learnagent do` runs but stores nothing (learnagent logs on "
                   "to resume)")


def gc(dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would be removed; change nothing.")):
    """Remove the folders and branches of finished or dead episodes (never a live run or one you kept)."""
    from learnagent.cli.display import ClosableConsole, silence_stdout
    from learnagent.services.gc import collect
    from learnagent.store.episodes import Store

    repo = _repo()
    with Store() as store:
        items = collect(store, repo, dry_run=dry_run)  # all removed before a line is printed (`gc | head`)
    console = ClosableConsole()
    try:
        if not items:
            console.print("Nothing to clean up.")
            return
        console.print("would remove (dry run: nothing changed)" if dry_run else "removed", style="bold")
        episodes = [i for i in items if i.what != "sandbox tmp"]
        tmps = [i for i in items if i.what == "sandbox tmp"]
        if episodes:
            console.print(gc_table(episodes, dry_run))
        if tmps:
            console.print(gc_tmp_table(tmps, dry_run))
        where = []
        if any(i.what == "episode" for i in episodes):
            where.append("runs that died or whose do ended before the verdict " + ("would be" if dry_run else "are")
                         + " marked interrupted in the store")
        if episodes:
            where.append(f"episode folders: {repo.worktrees_dir}/<episode>; branches: learnagent/<episode>")
        if tmps:
            where.append(f"sandbox tmp folders: {Path(tmps[0].target).parent}")
        for line in where:  # soft wrap: the terminal wraps a long path, rich does not cut it
            console.print(line, style="dim", soft_wrap=True, highlight=False, markup=False)
        sys.stdout.flush()
    except BrokenPipeError:  # `gc | head`: everything is done already, the reader wanted no more
        silence_stdout()


def _plain_table(*columns: tuple[str, dict]):
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for name, options in columns:
        table.add_column(name, **options)
    return table


def gc_table(items, dry_run: bool):
    """One row per episode, so each is one line at any width and in a pipe: its id whole (what
    `show` and `forget` take), why it goes, and what goes (its folder, its branch)."""
    from rich.text import Text

    rows: dict[str, dict] = {}
    for item in items:
        row = rows.setdefault(item.episode_id, {"removes": [], "why": []})
        if item.what != "episode":  # the mark 'interrupted' is told below the table
            what = "folder" if item.what == "worktree" else item.what
            row["removes"].append(what + ("" if dry_run or item.done else " (failed)"))
        if item.reason not in row["why"]:
            row["why"].append(item.reason)
    table = _plain_table(("episode", {"no_wrap": True, "style": "bold"}), ("why", {"overflow": "fold", "ratio": 1}),
                         ("removes", {"no_wrap": True}))
    for eid, row in rows.items():
        removes = ", ".join(row["removes"])
        table.add_row(eid, "; ".join(row["why"]), Text(removes or "-", style="red" if "(failed)" in removes else ""))
    return table


def gc_tmp_table(items, dry_run: bool):
    """Orphaned sandbox tmp folders (named after their process), one per line."""
    table = _plain_table(("sandbox tmp", {"no_wrap": True}), ("why", {"overflow": "fold", "ratio": 1}))
    for item in items:
        table.add_row(Path(item.target).name + ("" if dry_run or item.done else " (failed)"), item.reason)
    return table


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
    app.add_typer(logs_app, name="logs")
    app.command("gc")(gc)
