"""Outcome commands: hook (hidden), hooks install/uninstall/status, accept, reject, status, history import, review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

hooks_app = typer.Typer(help="Install or remove the git hooks that record what became of the agent's edits.",
                        no_args_is_help=True)
history_app = typer.Typer(help="Learn from the repository's past commits.", no_args_is_help=True)


def _repo():
    """The repository of the current folder (its main tree keys its episodes and outcomes)."""
    from learnagent.core.repository import find_repository

    return find_repository(Path.cwd())


def _root() -> Path:
    return _repo().main_tree


def _console():
    from rich.console import Console

    return Console()


# ---------------------------------------------------------------- hooks

def hook(name: str = typer.Argument(..., metavar="HOOK", help="post-commit | post-merge | post-rewrite"),
         args: Optional[list[str]] = typer.Argument(None, metavar="ARGS")):
    """Called by the git hooks; never fails (errors go to hooks.log in the data home)."""
    from learnagent.services.settle_outcomes import main

    raise typer.Exit(main([name, *(args or [])]))


@hooks_app.command("install")
def hooks_install():
    """Install the post-commit, post-merge and post-rewrite hooks (chained with any already there)."""
    from learnagent.core.githooks import install_hooks

    for line in install_hooks(_root()):
        typer.echo(line)


@hooks_app.command("uninstall")
def hooks_uninstall():
    """Remove learnagent's hooks and put back exactly what was there before."""
    from learnagent.core.githooks import uninstall_hooks

    for line in uninstall_hooks(_root()):
        typer.echo(line)


@hooks_app.command("status")
def hooks_status_cmd():
    """Show where the hooks are and whether they are installed."""
    from learnagent.core.githooks import hooks_status

    for s in hooks_status(_root()):
        state = "installed" if s["installed"] else ("another hook (not ours)" if s["other_hook"] else "not installed")
        chained = " (chained to the previous hook)" if s["chained"] else ""
        typer.echo(f"{s['hook']:<13} {state}{chained}  {s['path']}")


# ---------------------------------------------------------------- explicit verdicts

def _verdict(episode: str, outcome: str, reason: str | None) -> None:
    from learnagent.store.episodes import Store
    from learnagent.store.outcomes import explicit_verdict

    with Store() as store:
        eid = store.resolve_id(episode)
        explicit_verdict(store, eid, outcome, reason)
    typer.echo(f"episode {eid}: {outcome}")


def accept(episode: str = typer.Argument(..., metavar="ID", help="Episode id (a unique prefix is enough).")):
    """Mark an episode accepted (its edit was good), whatever the commits say."""
    _verdict(episode, "accepted", None)


def reject(episode: str = typer.Argument(..., metavar="ID", help="Episode id (a unique prefix is enough)."),
           reason: Optional[str] = typer.Option(None, "--reason", "-r", metavar="TEXT", help="Why, for the record.")):
    """Mark an episode rejected."""
    _verdict(episode, "rejected", reason)


# ---------------------------------------------------------------- status

def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Acceptance, test-pass and survival rates by week and by model/adapter."""
    from learnagent.store.episodes import Store
    from learnagent.store.outcome_stats import collect, summarize
    from learnagent.store.outcomes import expire_stale, load_settings
    from learnagent.store.survival import update_survival

    repo = _repo()
    root = repo.main_tree
    settings = load_settings(root)
    with Store() as store:
        repo_id = store.ensure_repo(repo)
        expire_stale(store, root, settings, repo_id=repo_id)
        update_survival(store, root, repo_id, settings.survival_commits)
        summary = summarize(collect(store, repo_id))
        imported = store.count_episodes(repo_id, source="history")
    summary = {"repo": str(root), "repo_id": repo.key, "survival_commits": settings.survival_commits,
               "history_imported": imported} | summary
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_status(summary)


def _pct(v) -> str:
    return "—" if v is None else f"{v:.0%}"


def _print_status(s: dict) -> None:
    from rich.table import Table

    from learnagent.store.outcome_stats import sparkline

    con = _console()
    t = s["totals"]
    imported = s.get("history_imported", 0)
    # rates measure the agent's own work: imported commits are training material, not counted here
    left_out = f"{imported:,} imported from git history are not counted: they are your commits, not the agent's"
    if not t["episodes"]:
        con.print(f"[bold]{Path(s['repo']).name}[/]: no `learnagent do` episodes yet"
                  + (f" ({left_out})" if imported else ""), highlight=False)
        return
    outcomes = ", ".join(f"{k} {v}" for k, v in t["outcomes"].items())
    con.print(f"[bold]{Path(s['repo']).name}[/]: {t['episodes']} episodes ({outcomes})", highlight=False)
    if imported:
        con.print(f"[dim]{left_out}[/]", highlight=False)
    weeks = s["weeks"][-12:]
    table = Table(title="by week", title_justify="left")
    for col in ("week", "episodes", "decided", "accepted", "tests pass", f"survival@{s['survival_commits']}"):
        table.add_column(col, justify="right" if col != "week" else "left")
    for w in weeks:
        table.add_row(w["week"], str(w["episodes"]), str(w["decided"]), _pct(w["acceptance"]), _pct(w["test_pass"]),
                      _pct(w["survival"]))
    table.add_row("trend", "", "", sparkline([w["acceptance"] for w in weeks]),
                  sparkline([w["test_pass"] for w in weeks]), sparkline([w["survival"] for w in weeks]),
                  style="bold")
    table.add_row("all", str(t["episodes"]), str(t["decided"]), _pct(t["acceptance"]), _pct(t["test_pass"]),
                  _pct(t["survival"]), style="bold")
    con.print(table)
    models = Table(title="by model / adapter", title_justify="left")
    for col in ("model", "adapter", "episodes", "accepted", "tests pass", "survival"):
        models.add_column(col, justify="left" if col in ("model", "adapter") else "right")
    for m in s["by_model"]:
        models.add_row(m["model"], m["adapter"], str(m["episodes"]), _pct(m["acceptance"]), _pct(m["test_pass"]),
                       _pct(m["survival"]))
    con.print(models)


# ---------------------------------------------------------------- history, review

@history_app.command("import")
def history_import(since: Optional[str] = typer.Option(None, "--since", metavar="DATE", help="Only commits after "
                                                       "DATE: 2024-05-01, 2024-05-01T14:30, or what `git log "
                                                       "--since` reads (\"2 weeks ago\"); as `forget --since`."),
                   max_commits: int = typer.Option(200, "--max", min=1, metavar="N", help="Import at most this many commits."),
                   max_diff_lines: int = typer.Option(1500, "--max-diff-lines", min=1, metavar="N",
                                                      help="Skip commits changing more lines than this.")):
    """Turn past commits into (accepted) episodes; re-running skips those already imported."""
    from learnagent.cli.display import StepProgress
    from learnagent.core.dates import git_since
    from learnagent.store.episodes import Store
    from learnagent.store.history import import_history

    after = git_since(since) if since is not None else None  # one date parser with `forget --since`
    console = _console()
    with Store() as store, StepProgress(console, "history import", "imported") as bar:
        report = import_history(store, _repo(), since=after, max_commits=max_commits, max_diff_lines=max_diff_lines,
                                progress=lambda seen, commits, chosen, written: bar.update(
                                    written, chosen if written else min(max_commits, commits),
                                    f"{seen:,}/{commits:,} commits looked at, {chosen:,} to import" if not written
                                    else f"writing the episodes ({seen:,}/{commits:,} commits looked at)"))
    skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(report.skipped.items()))
    line = (f"imported {len(report.imported):,} of {report.commits:,} commits as episodes"
            + (f" (skipped: {skipped})" if skipped else ""))
    if report.capped:
        line += f"; stopped at --max {max_commits:,}: raise --max to import more"
    console.print(line, highlight=False, markup=False, soft_wrap=True)


def review(files: Optional[list[str]] = typer.Argument(None, metavar="FILES", help="Only these staged files."),
           strict: bool = typer.Option(False, "--strict", help="Exit 1 (block the commit) when a line is flagged."),
           margin: float = typer.Option(1.0, "--margin", metavar="NATS", help="Nats/token by which the adapter's surprise must "
                                                              "exceed the base model's to flag a line.")):
    """Check the staged changes against the repository's learned conventions (needs a repo adapter)."""
    from learnagent.learning.convention_review import review as run_review

    raise typer.Exit(run_review(_repo(), files or None, strict=strict, margin=margin, say=typer.echo))


def register(app: typer.Typer) -> None:
    app.command("hook", hidden=True)(hook)
    app.add_typer(hooks_app, name="hooks")
    app.command("accept")(accept)
    app.command("reject")(reject)
    app.command("status")(status)
    app.add_typer(history_app, name="history")
    app.command("review")(review)


def main() -> None:
    """`python -m learnagent.cli.outcome_cmds`: these commands alone (used where the full app is not needed)."""
    from learnagent.cli.app import run

    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(app)
    run(app, prog_name="python -m learnagent.cli.outcome_cmds")


if __name__ == "__main__":
    main()
