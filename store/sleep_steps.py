"""The persisted steps of `learnagent sleep` (revision 0007, store/migrations/versions): one row per
transition of a candidate.

A candidate adapter goes reserved -> planned -> trained -> gated -> sealed -> decided
(services/sleep_night.py makes each transition). Each row is written in one statement, after the
work of its step is durable, so the newest row of a version says what an interrupted sleep had
finished: the next sleep resumes or settles the candidate from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal

SleepState = Literal["reserved", "planned", "trained", "gated", "sealed", "decided"]
STATES: tuple[SleepState, ...] = ("reserved", "planned", "trained", "gated", "sealed", "decided")


@dataclass(frozen=True)
class SleepStep:
    version: str
    state: SleepState
    at: float
    data: dict = field(default_factory=dict)


class SleepSteps:
    """The `sleep_steps` rows of one repository."""

    def __init__(self, conn, repo_id: str):
        self.conn = conn
        self.repo_id = repo_id

    def record(self, version: str, state: SleepState, data: dict | None = None) -> SleepStep:
        """Append `version`'s next state (one INSERT: atomic on its own)."""
        if state not in STATES:
            raise ValueError(f"unknown sleep state {state!r}")
        step = SleepStep(version, state, time.time(), dict(data or {}))
        self.conn.execute(
            "INSERT INTO sleep_steps(repo_id, version, seq, state, at, data) SELECT ?, ?,"
            " COALESCE(MAX(seq), -1) + 1, ?, ?, ? FROM sleep_steps WHERE repo_id = ? AND version = ?",
            (self.repo_id, version, state, step.at, json.dumps(step.data, sort_keys=True), self.repo_id, version))
        return step

    def history(self, version: str) -> list[SleepStep]:
        """Every state `version` went through, oldest first ([] for a version sleep never recorded)."""
        rows = self.conn.execute("SELECT version, state, at, data FROM sleep_steps WHERE repo_id = ? AND version = ?"
                                 " ORDER BY seq", (self.repo_id, version)).fetchall()
        return [SleepStep(r["version"], r["state"], r["at"], json.loads(r["data"] or "{}")) for r in rows]

    def last(self, version: str) -> SleepStep | None:
        steps = self.history(version)
        return steps[-1] if steps else None
