"""`learnagent log` and `learnagent show ID`: read the episode store."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def log(
    limit: int = typer.Option(20, "--limit", "-n", min=1, metavar="N", help="Show the N most recent episodes."),
    all_repos: bool = typer.Option(False, "--all", help="Episodes of every repository, not just this one."),
    as_json: bool = typer.Option(False, "--json"),
):
    """List recent episodes."""
    from learnagent.agent.worktree import find_repo
    from learnagent.core import home
    from learnagent.store.episodes import Store

    repo_id = None if all_repos else home.repo_key(find_repo(need_branch=False).root)
    with Store() as store:
        episodes = store.list_episodes(repo_id, limit=limit)
    if as_json:
        print(json.dumps([{k: v for k, v in e.items() if k != "final_diff"} for e in episodes], default=str))
        return
    table = Table(title="episodes", header_style="bold")
    for col in ("id", "started", "task", "model", "adapter", "status", "tests", "outcome", "steps", "tokens"):
        table.add_column(col, overflow="fold" if col == "task" else "ellipsis", no_wrap=col != "task")
    colour = {"pass": "green", "fail": "red", "timeout": "red"}
    for e in episodes:
        tests = e["tests"] or "-"
        table.add_row(e["id"], _when(e["started_at"]), e["task"][:60], e["model"] or "", e["adapter_version"] or "-",
                      e["status"], f"[{colour.get(tests, 'dim')}]{tests}[/]", e["outcome"], str(e["steps"]),
                      str(e["prompt_tokens"] + e["completion_tokens"]))
    Console().print(table if episodes else "No episodes recorded yet: run learnagent do \"TASK\".")


def show(episode: str = typer.Argument(..., metavar="ID", help="Episode id or unique prefix."),
         as_json: bool = typer.Option(False, "--json")):
    """Show one episode whole: task, conversation, tool calls, tests, diff, outcome."""
    from learnagent.store.episodes import Store

    with Store() as store:
        ep = store.get_episode(store.resolve_id(episode))
    if as_json:
        print(json.dumps(ep, default=str))
        return
    console = Console()
    head = Table(show_header=False, box=None)
    for key in ("id", "repo_path", "task", "source", "base_commit", "branch", "model", "adapter_version", "status",
                "outcome", "outcome_reason", "summary", "error"):
        if ep.get(key):
            head.add_row(key, str(ep[key]))
    head.add_row("started", _when(ep["started_at"]))
    head.add_row("tokens", f"{ep['prompt_tokens']} prompt + {ep['completion_tokens']} completion, ${ep['cost_usd']:.4f}")
    console.print(Panel(head, title=f"episode {ep['id']}"))
    calls = {c["response_seq"]: c for c in ep["model_calls"]}
    for m in ep["messages"]:
        call = calls.get(m["seq"])
        meta = f" · {call['prompt_tokens']}+{call['completion_tokens']} tokens, {call['duration_s']:.2f}s" if call else ""
        style = {"system": "dim", "assistant": "cyan", "user": "white"}.get(m["role"], "white")
        console.print(Panel(Text(m["content"]), title=f"step {m['step']} · {m['role']}{meta}", border_style=style,
                            title_align="left"))
    if ep["test_runs"]:
        table = Table(title="test runs")
        for col in ("phase", "command", "exit", "seconds"):
            table.add_column(col)
        for t in ep["test_runs"]:
            table.add_row(t["phase"], t["command"], "timeout" if t["timed_out"] else str(t["exit_code"]),
                          f"{t['duration_s']:.1f}")
        console.print(table)
    if ep.get("final_diff"):
        console.print(Panel(Syntax(ep["final_diff"], "diff", theme="ansi_dark", word_wrap=True), title="final diff"))


def register(app: typer.Typer) -> None:
    app.command()(log)
    app.command()(show)
