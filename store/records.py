"""Typed records the store returns: what happened, by name, with its statuses listed once.

The store builds these from its rows (`Store.find_episode`, `get_episode`, ...); callers read
attributes. Dicts appear only at the JSON edge (`learnagent log --json`, `show --json`), made by
`as_json` below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# how an episode's run ended ('running' while it runs; 'interrupted': Ctrl-C, a killed process, gc)
EpisodeStatus = Literal["running", "finished", "budget_exceeded", "failed", "interrupted"]
# what became of its proposal; 'unchanged': the run changed nothing (out of the rates)
OutcomeName = Literal["pending", "accepted", "edited", "rejected", "reverted", "kept", "unchanged"]
# where an episode came from: a `do` run, or a commit imported by `history import`
EpisodeSource = Literal["do", "history"]

EPISODE_STATUSES: tuple[str, ...] = get_args(EpisodeStatus)
OUTCOMES: tuple[str, ...] = get_args(OutcomeName)


@dataclass(frozen=True)
class Episode:
    """One row of `episodes` (+ its repository's name and path when read with them)."""

    id: str
    repo_id: str
    source: EpisodeSource
    task: str
    status: EpisodeStatus
    outcome: OutcomeName
    started_at: float
    base_commit: str | None = None
    branch: str | None = None
    worktree: str | None = None
    model: str | None = None
    adapter_version: str | None = None
    outcome_reason: str | None = None
    final_diff: str | None = None
    summary: str | None = None
    error: str | None = None
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    ended_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    repo_name: str | None = None
    repo_path: str | None = None


def from_row(cls, row, **overrides):
    """A record of `cls` from a database row: the columns it names, then `overrides`."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: row[k] for k in row.keys() if k in names}
    return cls(**(values | overrides))


def as_json(record) -> dict[str, Any]:
    """The JSON edge: a record (and the records inside it) as plain dicts."""
    return dataclasses.asdict(record)
