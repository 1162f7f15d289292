"""`learnagent push` and `learnagent team join|leave|status`: sharing episodes with a team store (docs/TEAM.md)."""

from __future__ import annotations

import json
from typing import Optional

import typer

team_app = typer.Typer(help="Choose which repositories `learnagent push` shares with your team.", no_args_is_help=True)


def _repo():
    """The Repository of the current folder, resolved once here (it must have a first commit)."""
    from learnagent.agent.worktree import find_repo

    return find_repo(need_branch=False).repository


@team_app.command("join")
def team_join(name: Optional[str] = typer.Option(None, "--name", metavar="OWNER/REPO",
                                                 help="The repository's name on the team store "
                                                      "(default: its origin remote, e.g. github.com/acme/api).")):
    """Opt this repository in: `learnagent push` sends its episodes to the team store."""
    from learnagent.services import team
    from learnagent.store.episodes import Store

    repo = _repo()
    with Store() as store:
        team_name = team.join(store, repo, name)
    typer.echo(f"{repo.work_tree} joins the team store as {team_name}: `learnagent push` sends its finished `do` episodes")


@team_app.command("leave")
def team_leave():
    """Opt this repository out again (what was pushed stays there; `learnagent forget` removes it)."""
    from learnagent.store import team_rows
    from learnagent.store.episodes import Store

    repo = _repo()
    with Store() as store:
        left = team_rows.leave(store, store.ensure_repo(repo))
    typer.echo(f"{repo.work_tree} {'no longer' if left else 'was not'} shared with the team store")


@team_app.command("status")
def team_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the repositories opted in to `learnagent push` and their names on the team store."""
    from learnagent.store import team_rows
    from learnagent.store.episodes import Store

    with Store() as store:
        joined = team_rows.joined_repos(store)
        paths = {rid: team_rows.repo_path(store, rid) for rid in joined}
    if as_json:
        typer.echo(json.dumps([{"path": paths[r], "team_name": n} for r, n in joined.items()]))
        return
    if not joined:
        typer.echo("no repository is shared (learnagent team join, inside one)")
    for rid, team_name in joined.items():
        typer.echo(f"{team_name}\t{paths[rid]}")


def push(to: Optional[str] = typer.Option(None, "--to", metavar="URL",
                                          help="The team store (default: the url of the team section in your own config, docs/TEAM.md)."),
         as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")):
    """Send the finished episodes of the repositories you opted in (team join) to the team store."""
    from learnagent.services import team
    from learnagent.store.episodes import Store
    from learnagent.store.pg import safe_url

    url = team.team_url(to)
    with Store() as local, Store(url) as shared:
        if local.url == shared.url:
            from learnagent.core.errors import UsageError

            raise UsageError("the team store is this machine's own store (LEARNAGENT_DB): nothing to push")
        result = team.push(local, shared, url)
    if as_json:
        typer.echo(json.dumps(result.__dict__))
        return
    typer.echo(f"pushed to {safe_url(url)}: {len(result.sent)} new episode(s), {len(result.updated)} updated "
               f"outcome(s) from {len(result.repos)} repositor{'y' if len(result.repos) == 1 else 'ies'}")
    if result.withheld:
        typer.echo(f"withheld {len(result.withheld)} episode(s) whose changes touch ignored files: "
                   + ", ".join(result.withheld[:5]))
    if result.paused:
        typer.echo("not pushed (recording is off): " + ", ".join(result.paused))
    if result.clashed:
        typer.echo(f"not pushed: {len(result.clashed)} episode(s) whose id another machine's episode holds on the "
                   "team store (`learnagent forget` it here, or keep it local): " + ", ".join(result.clashed[:5]), err=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.add_typer(team_app, name="team")
