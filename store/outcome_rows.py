"""The store's statements on outcomes: evidence events, processed commits, the episodes a commit or
the expiry may decide, and the rows `status` / `report` rate.

A mixin of `Store` (store/episodes.py). The rules (what a commit means for an episode, when a
window closes) stay in store/outcomes.py and store/survival.py. JSON inside `detail` is read and
written here in Python, never with SQLite's json functions, so the statements port as they are.
"""

from __future__ import annotations

import json
import time

from learnagent.store.records import Episode, Outcome, OutcomeKind, RatedEpisode, from_row

_OPEN_DIFF = "source != 'history' AND final_diff IS NOT NULL AND final_diff != ''"


def _outcome(row) -> Outcome:
    return from_row(Outcome, row, detail=json.loads(row["detail"] or "{}"))


class OutcomeRows:
    # ---- evidence ---------------------------------------------------------------------------------
    def add_outcome_event(self, episode_id: str, kind: OutcomeKind, *, commit: str | None = None,
                          outcome: str | None = None, matched: int | None = None, total: int | None = None,
                          detail: dict | None = None) -> bool:
        """Record one piece of evidence; False when it was there already (one 'match' per episode and commit)."""
        cur = self.conn.execute(
            "INSERT INTO outcome_events(episode_id, kind, commit_sha, outcome, matched, total, detail, created_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (episode_id, kind, commit, outcome, matched, total, self.scrub(json.dumps(detail or {})), time.time()))
        return cur.rowcount > 0

    def outcome_events(self, episode_id: str, kind: OutcomeKind | None = None) -> list[Outcome]:
        """The episode's evidence (of one kind, when given), oldest first."""
        sql, args = "SELECT * FROM outcome_events WHERE episode_id = ?", [episode_id]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        return [_outcome(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def rewrite_matches(self, old: str, new: str) -> set[str]:
        """An amend/rebase replaced commit `old` by `new`: its matches become 'rewritten' (noting `new`).
        Returns the episodes they belong to."""
        rows = self.conn.execute("SELECT id, episode_id, detail FROM outcome_events WHERE kind = 'match'"
                                 " AND commit_sha = ?", (old,)).fetchall()
        for r in rows:
            detail = json.loads(r["detail"] or "{}") | {"rewritten_to": new}
            self.conn.execute("UPDATE outcome_events SET kind = 'rewritten', detail = ? WHERE id = ?",
                              (json.dumps(detail), r["id"]))
        return {r["episode_id"] for r in rows}

    def drop_provisional_survival(self, episode_id: str) -> None:
        """Delete the episode's survival results measured at HEAD (not final): a new one replaces them."""
        ids = [e.id for e in self.outcome_events(episode_id, "survival") if not e.detail.get("final")]
        if ids:
            self.conn.execute(f"DELETE FROM outcome_events WHERE id IN ({','.join('?' * len(ids))})", ids)

    # ---- commits ----------------------------------------------------------------------------------
    def commit_processed(self, repo_id: str, sha: str) -> bool:
        return self.conn.execute("SELECT 1 FROM processed_commits WHERE repo_id = ? AND sha = ?",
                                 (repo_id, sha)).fetchone() is not None

    def mark_commit_processed(self, repo_id: str, sha: str, at: float | None = None) -> None:
        self.conn.execute("INSERT INTO processed_commits(repo_id, sha, processed_at) VALUES (?,?,?)"
                          " ON CONFLICT DO NOTHING", (repo_id, sha, time.time() if at is None else at))

    # ---- the episodes outcomes are about ----------------------------------------------------------
    def has_repo(self, repo_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM repos WHERE id = ?", (repo_id,)).fetchone() is not None

    def count_episodes(self, repo_id: str, *, source: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM episodes WHERE repo_id = ?", [repo_id]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        return self.conn.execute(sql, args).fetchone()[0]

    def episodes_a_commit_may_decide(self, repo_id: str, since: float) -> list[Episode]:
        """`do` episodes with a diff, started at/after `since`, still open or decided by attribution
        (pending, kept, accepted, edited); oldest first."""
        return [self._episode(r) for r in self.conn.execute(
            f"SELECT * FROM episodes WHERE repo_id = ? AND {_OPEN_DIFF}"
            " AND outcome IN ('pending', 'kept', 'accepted', 'edited') AND started_at >= ? ORDER BY started_at",
            (repo_id, since))]

    def episodes_committed_recently(self, repo_id: str, limit: int = 200) -> list[Episode]:
        """Accepted/edited episodes some commit carried (matched or rewritten), newest first: what a
        later commit may revert."""
        return [self._episode(r) for r in self.conn.execute(
            "SELECT * FROM episodes e WHERE repo_id = ? AND outcome IN ('accepted', 'edited') AND EXISTS"
            " (SELECT 1 FROM outcome_events o WHERE o.episode_id = e.id AND o.kind IN ('match', 'rewritten'))"
            " ORDER BY started_at DESC LIMIT ?", (repo_id, limit))]

    def episodes_open_before(self, repo_id: str, cutoff: float) -> list[Episode]:
        """Finished `do` episodes with a diff, still pending or kept, started before `cutoff`: expired."""
        return [self._episode(r) for r in self.conn.execute(
            f"SELECT * FROM episodes WHERE repo_id = ? AND {_OPEN_DIFF} AND outcome IN ('pending', 'kept')"
            " AND status NOT IN ('running', 'interrupted') AND started_at < ? ORDER BY started_at",
            (repo_id, cutoff))]

    def episodes_to_measure_survival(self, repo_id: str, limit: int = 200) -> list[Episode]:
        """Accepted/edited/reverted episodes with a commit match and no final survival result, newest first."""
        out = []
        for r in self.conn.execute(
                "SELECT * FROM episodes e WHERE repo_id = ? AND outcome IN ('accepted', 'edited', 'reverted')"
                " AND EXISTS (SELECT 1 FROM outcome_events o WHERE o.episode_id = e.id AND o.kind = 'match')"
                " ORDER BY started_at DESC", (repo_id,)).fetchall():
            if len(out) >= limit:
                break
            if not any(e.detail.get("final") for e in self.outcome_events(r["id"], "survival")):
                out.append(self._episode(r))
        return out

    def rated_episodes(self, repo_id: str) -> list[RatedEpisode]:
        """Every `do` episode of the repository with its last test result and latest survival, oldest first."""
        survival: dict[str, float] = {}
        for r in self.conn.execute(
                "SELECT o.episode_id, o.detail FROM outcome_events o JOIN episodes e ON e.id = o.episode_id"
                " WHERE e.repo_id = ? AND o.kind = 'survival' ORDER BY o.id", (repo_id,)):
            survival[r["episode_id"]] = json.loads(r["detail"] or "{}").get("rate")  # the latest one wins
        rows = self.conn.execute(
            "SELECT e.id, e.started_at, e.outcome, e.model, e.adapter_version,"
            " (SELECT CASE WHEN t.exit_code = 0 AND t.timed_out = 0 THEN 1 ELSE 0 END FROM test_runs t"
            "  WHERE t.episode_id = e.id ORDER BY CASE WHEN t.phase = 'final' THEN 0 ELSE 1 END, t.id DESC LIMIT 1)"
            " AS passed FROM episodes e WHERE e.repo_id = ? AND e.source != 'history' ORDER BY e.started_at, e.id",
            (repo_id,))
        return [RatedEpisode(id=r["id"], started_at=r["started_at"], outcome=r["outcome"], model=r["model"],
                             adapter_version=r["adapter_version"],
                             passed=None if r["passed"] is None else bool(r["passed"]),
                             survival=survival.get(r["id"])) for r in rows]
