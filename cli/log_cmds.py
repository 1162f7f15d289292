"""`learnagent log` and `learnagent show ID`: read the episode store."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from learnagent.store.records import Episode

TASK_MIN = 24  # the task column never gets narrower than this (nor than a third of the line); other columns go first
SUMMARY_FIELDS = ("id", "repo_id", "repo_name", "repo_path", "source", "task", "status", "outcome", "outcome_reason",
                  "tests", "model", "adapter_version", "steps", "prompt_tokens", "completion_tokens", "cost_usd",
                  "started_at", "ended_at", "base_commit", "branch", "summary", "error")


def _when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return dt.datetime.fromtimestamp(ts).strftime(fmt) if ts else ""


def episode_summary(ep: Episode) -> dict:
    """An episode as `log --json` gives it: what it was and how it ended, never file contents, diffs
    or the conversation (`show --json ID` has those)."""
    out = {key: getattr(ep, key) for key in SUMMARY_FIELDS}
    meta = ep.meta
    if meta.get("commit"):
        out["commit"] = meta["commit"]  # history imports: the commit it came from
    files = meta.get("applied_files") or meta.get("files")
    if isinstance(files, list):
        out["files"] = files
    return out


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _short_model(spec: str | None) -> str:
    """`litellm:anthropic/claude-sonnet-4-5` -> `claude-sonnet-4-5`, `scripted:/long/path/s.json` ->
    `scripted:s.json`: the part that tells models apart fits the column (`show` has the whole spec)."""
    if not spec:
        return ""
    backend, _, target = spec.partition(":")
    if backend not in ("litellm", "local", "scripted"):
        backend, target = "", spec
    name = target.rstrip("/").rsplit("/", 1)[-1] or target
    return f"scripted:{name}" if backend == "scripted" else name


def _compact(n: int) -> str:
    if not n:
        return "-"
    if n < 1000:
        return str(n)
    return f"{n / 1000:.1f}k" if n < 1_000_000 else f"{n / 1_000_000:.1f}M"


def log_table(episodes: list[Episode], short_ids: dict[str, str], width: int, all_repos: bool = False):
    """The `log` table fitted to `width`: ids whole (no wrap, never cut), one line per episode (the
    task's first line, ellipsized), and the task column at least a third of the line (TASK_MIN at
    the least): as the terminal narrows, adapter, model, tokens and steps columns go, the start
    time loses its clock, then status, repository, start time, tests and outcome go (`--json`
    always has everything)."""
    colour = {"pass": "green", "fail": "red", "timeout": "red"}
    outcome_colour = {"accepted": "green", "edited": "green", "rejected": "red", "reverted": "red",
                      "kept": "yellow"}
    columns: dict[str, list] = {  # name -> cells; order is the order on screen
        "id": [Text(short_ids[e.id], style="bold") for e in episodes],
        "repo": [Text(e.repo_name or "") for e in episodes] if all_repos else None,
        "started": [Text(_when(e.started_at)) for e in episodes],
        "task": [Text(_first_line(e.task)) for e in episodes],
        "status": [Text(e.status) for e in episodes],
        "tests": [Text(e.tests or "-", style=colour.get(e.tests or "", "dim")) for e in episodes],
        "outcome": [Text(e.outcome, style=outcome_colour.get(e.outcome, "")) for e in episodes],
        "steps": [Text(str(e.steps or "-")) for e in episodes],
        "tokens": [Text(_compact(e.prompt_tokens + e.completion_tokens)) for e in episodes],
        "model": [Text(_short_model(e.model) or (e.source if e.source != "do" else "-"),
                       style="" if e.model else "dim") for e in episodes],
        "adapter": [Text(e.adapter_version or "-") for e in episodes],
    }
    columns = {k: v for k, v in columns.items() if v is not None}
    max_width = {"model": 18, "repo": 16}
    right = {"steps", "tokens"}

    def natural(name: str) -> int:
        return min(max_width.get(name, 10**6), max([len(name)] + [c.cell_len for c in columns[name]]))

    def shorten_started() -> None:
        columns["started"] = [Text(_when(e.started_at, "%Y-%m-%d")) for e in episodes]

    steps = [("drop", "adapter"), ("drop", "model"), ("drop", "tokens"), ("drop", "steps"), ("short", "started"),
             ("drop", "status"), ("drop", "repo"), ("drop", "started"), ("drop", "tests"), ("drop", "outcome")]
    task_min = max(TASK_MIN, width // 3)
    while True:
        others = [n for n in columns if n != "task"]
        room = width - sum(natural(n) for n in others) - 2 * len(others)  # one space each side of a rule-less gap
        if room >= task_min or not steps:
            break
        what, name = steps.pop(0)
        if name in columns and what == "short":
            shorten_started()
        elif name in columns:
            columns.pop(name)
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold", expand=False)
    for name in columns:
        w = max(1, min(room, natural("task"))) if name == "task" else natural(name)
        table.add_column(name, width=w, min_width=w if name == "id" else None, no_wrap=True, overflow="ellipsis",
                         justify="right" if name in right else "left")
    for i in range(len(episodes)):
        table.add_row(*(columns[name][i] for name in columns))
    return table


def log(
    limit: int = typer.Option(20, "--limit", "-n", min=1, metavar="N", help="Show the N most recent episodes."),
    all_repos: bool = typer.Option(False, "--all", help="Episodes of every repository, not just this one."),
    as_json: bool = typer.Option(False, "--json", help="Summaries as JSON (full ids; `show --json ID` has the rest)."),
):
    """List recent episodes (ids print as their shortest unique prefix, which show/apply/forget take)."""
    from learnagent.agent.worktree import find_repo
    from learnagent.store.episodes import Store

    repo_id = None if all_repos else find_repo(need_branch=False).repository.key
    with Store() as store:
        episodes = store.list_episodes(repo_id, limit=limit)
        short_ids = store.short_ids([e.id for e in episodes])
    if as_json:
        print(json.dumps([episode_summary(e) for e in episodes], default=str))
        return
    console = Console()
    if not episodes:
        console.print("No episodes recorded yet: run learnagent do \"TASK\".")
        return
    console.print(log_table(episodes, short_ids, console.width, all_repos))


def show(episode: str = typer.Argument(..., metavar="ID", help="Episode id or unique prefix."),
         as_json: bool = typer.Option(False, "--json")):
    """Show one episode whole: task, conversation, tool calls, tests, diff, outcome."""
    from learnagent.store.episodes import Store
    from learnagent.store.records import as_json as record_json

    with Store() as store:
        ep = store.get_episode(store.resolve_id(episode))
    if as_json:
        print(json.dumps(record_json(ep), default=str))
        return
    console = Console()
    head = Table(show_header=False, box=None)
    for key in ("id", "repo_path", "task", "source", "base_commit", "branch", "model", "adapter_version", "status",
                "outcome", "outcome_reason", "summary", "error"):
        if getattr(ep, key):
            head.add_row(key, str(getattr(ep, key)))
    head.add_row("started", _when(ep.started_at))
    head.add_row("tokens", f"{ep.prompt_tokens} prompt + {ep.completion_tokens} completion, ${ep.cost_usd:.4f}")
    console.print(Panel(head, title=f"episode {ep.id}"))
    calls = {c.response_seq: c for c in ep.model_calls}
    for m in ep.messages:
        call = calls.get(m.seq)
        meta = f" · {call.prompt_tokens}+{call.completion_tokens} tokens, {call.duration_s:.2f}s" if call else ""
        style = {"system": "dim", "assistant": "cyan", "user": "white"}.get(m.role, "white")
        console.print(Panel(Text(m.content), title=f"step {m.step} · {m.role}{meta}", border_style=style,
                            title_align="left"))
    if ep.test_runs:
        table = Table(title="test runs")
        for col in ("phase", "command", "exit", "seconds"):
            table.add_column(col)
        for t in ep.test_runs:
            table.add_row(t.phase, t.command, "timeout" if t.timed_out else str(t.exit_code), f"{t.duration_s:.1f}")
        console.print(table)
    if ep.final_diff:
        cut = ep.meta.get("final_diff_truncated")
        title = "final diff" if not cut else \
            f"final diff (cut: {len(ep.final_diff.encode()):,} of {cut['bytes']:,} bytes stored; the branch has it whole)"
        console.print(Panel(Syntax(ep.final_diff, "diff", theme="ansi_dark", word_wrap=True), title=title))


def register(app: typer.Typer) -> None:
    app.command()(log)
    app.command()(show)
