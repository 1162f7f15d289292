"""Typed records the store returns: what happened, by name, with its statuses listed once.

The store builds these from its rows (`Store.find_episode`, `get_episode`, ...); callers read
attributes. Dicts appear only at the JSON edge (`log --json`, `show --json`, `adapters list --json`), made by
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

# who said a message; which test run (a `test` tool call during the loop, or the run after it); a test's verdict
Role = Literal["system", "user", "assistant"]
TestPhase = Literal["agent", "final"]
TestVerdict = Literal["pass", "fail", "timeout"]
# evidence about an outcome (outcome_events.kind): a commit carried the agent's lines ('match'; 'rewritten'
# once an amend/rebase replaced that commit), a verdict was reached, a commit reverted it, how much of it
# survives N commits later
OutcomeKind = Literal["match", "rewritten", "verdict", "revert", "survival"]
# an adapter version's place in the registry (learning/registry.py): reserved and training or sealed
# ('candidate'), loaded by `do` ('promoted'), failed the gate ('rejected'), superseded ('retired')
AdapterStatus = Literal["candidate", "promoted", "rejected", "retired"]

EPISODE_STATUSES: tuple[str, ...] = get_args(EpisodeStatus)
OUTCOMES: tuple[str, ...] = get_args(OutcomeName)
ADAPTER_STATUSES: tuple[str, ...] = get_args(AdapterStatus)
# still waiting for commits to decide them / a verdict reached (the acceptance rate's denominator)
OPEN_OUTCOMES: tuple[OutcomeName, ...] = ("pending", "kept")
DECIDED_OUTCOMES: tuple[OutcomeName, ...] = ("accepted", "edited", "rejected", "reverted")


@dataclass(frozen=True)
class Message:
    """One message of an episode's conversation, in order (`seq`)."""

    seq: int
    step: int
    role: Role
    content: str
    tokens: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class ModelCall:
    """One model call: it saw the first `n_prompt_messages` messages and answered with message `response_seq`."""

    step: int
    n_prompt_messages: int
    response_seq: int | None
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    cost_usd: float = 0.0
    engine: str | None = None
    adapter_version: str | None = None
    stop_reason: str | None = None


@dataclass(frozen=True)
class ToolCall:
    step: int
    name: str
    args: dict[str, Any]
    result: str
    ok: bool  # False when the tool reported an error to the model
    duration_s: float


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest test class

    phase: TestPhase
    command: str
    exit_code: int | None
    timed_out: bool
    output_tail: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def verdict(self) -> TestVerdict:
        return "timeout" if self.timed_out else "pass" if self.exit_code == 0 else "fail"


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
    tests: TestVerdict | None = None  # its last test run's verdict (Store.list_episodes, get_episode)
    # its whole record (Store.get_episode only; empty elsewhere)
    messages: tuple[Message, ...] = ()
    model_calls: tuple[ModelCall, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    test_runs: tuple[TestRun, ...] = ()


@dataclass(frozen=True)
class AdapterVersion:
    """One row of `adapters`, with the number of episodes it was trained on."""

    repo_id: str
    version: str  # v0001, v0002, ...
    path: str
    parent: str | None  # the version it was initialised from; None: the base model
    method: str  # opsd | sft
    base_model: str
    created_at: float
    status: AdapterStatus
    metrics: dict[str, Any] = field(default_factory=dict)  # the gate's and `eval`'s numbers
    reason: str | None = None  # why it was promoted / rejected / retired
    tainted: bool = False  # trained on an episode that was later forgotten
    episodes: int = 0


@dataclass(frozen=True)
class Outcome:
    """One row of `outcome_events`: a piece of evidence of what became of an episode's proposal."""

    id: int
    episode_id: str
    kind: OutcomeKind
    created_at: float
    commit_sha: str | None = None
    outcome: OutcomeName | None = None  # a verdict's outcome
    matched: int | None = None  # match: units covered by the commit; survival: lines present
    total: int | None = None  # units of the episode / lines checked
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RatedEpisode:
    """What `status` and `report` rate an episode on: its outcome, its last test run, its survival."""

    id: str
    started_at: float
    outcome: OutcomeName
    model: str | None
    adapter_version: str | None
    passed: bool | None  # its last test run (the final one when there is one); None: never tested
    survival: float | None  # the latest share of its committed lines still present; None: not measured


def from_row(cls, row, **overrides):
    """A record of `cls` from a database row: the columns it names, then `overrides`."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: row[k] for k in row.keys() if k in names}
    return cls(**(values | overrides))


def as_json(record) -> dict[str, Any]:
    """The JSON edge: a record (and the records inside it) as plain dicts."""
    return dataclasses.asdict(record)
