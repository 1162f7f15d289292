"""The store's privacy statements: the recording switch, forgotten-episode hashes, deleting episodes.

A mixin of `Store` (store/episodes.py): `self.conn` is the store's one connection. What to forget
and the git clean-up around it are decided above the store (store/privacy.py `forget`).
"""

from __future__ import annotations

import hashlib
import time
from typing import Iterable

from learnagent.store.records import Episode

# Every (table, column) that holds an episode id: what forgetting an episode deletes before its row.
# tests/test_store_sql.py checks it against the schema's foreign keys onto episodes(id); adapter_episodes
# has no such key (an adapter outlives the episodes it was trained on) and is listed by hand.
EPISODE_ROWS: tuple[tuple[str, str], ...] = (
    ("messages", "episode_id"), ("model_calls", "episode_id"), ("tool_calls", "episode_id"),
    ("test_runs", "episode_id"), ("outcome_events", "episode_id"), ("imported_commits", "episode_id"),
    ("adapter_episodes", "episode_id"),
)


def forgotten_hash(repo_id: str, value: str) -> str:
    """What the store keeps of a forgotten episode id (or imported commit): a hash, never the value."""
    return hashlib.sha256(f"{repo_id}:{value}".encode()).hexdigest()


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


class PrivacyRows:
    # ---- recording on/off (`learnagent logs off`) ---------------------------------------------------
    def recording_enabled(self, repo_id: str) -> bool:
        """False after `learnagent logs off` for this repository; True by default."""
        row = self.conn.execute("SELECT enabled FROM recording WHERE repo_id = ?", (repo_id,)).fetchone()
        return True if row is None else bool(row["enabled"])

    def set_recording(self, repo_id: str, enabled: bool) -> None:
        self.conn.execute(
            "INSERT INTO recording(repo_id, enabled, changed_at) VALUES (?,?,?)"
            " ON CONFLICT(repo_id) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at",
            (repo_id, int(enabled), time.time()))

    # ---- choosing episodes ----------------------------------------------------------------------
    def episode_ids(self, *, repo_id: str | None = None, since: float | None = None) -> list[str]:
        """Ids of the episodes of `repo_id` (any repository: None) started at/after `since`, oldest first."""
        sql, args = "SELECT id FROM episodes WHERE 1 = 1", []
        if repo_id is not None:
            sql += " AND repo_id = ?"
            args.append(repo_id)
        if since is not None:
            sql += " AND started_at >= ?"
            args.append(since)
        return [r["id"] for r in self.conn.execute(sql + " ORDER BY started_at, id", args)]

    def episodes_by_id(self, ids: Iterable[str]) -> list[Episode]:
        """The episodes (with their repository's name and path) of `ids` that exist, oldest first."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        rows = self.conn.execute(
            "SELECT e.*, r.name AS repo_name, r.path AS repo_path FROM episodes e JOIN repos r ON r.id = e.repo_id"
            f" WHERE e.id IN ({_marks(ids)}) ORDER BY e.started_at", ids)
        return [self._episode(r) for r in rows]

    # ---- forgetting -----------------------------------------------------------------------------
    def imported_commits_of(self, episode_ids: list[str]) -> dict[str, str]:
        """episode id -> the commit it was imported from (`history import`), for those that were."""
        if not episode_ids:
            return {}
        return {r["episode_id"]: r["sha"] for r in self.conn.execute(
            f"SELECT episode_id, sha FROM imported_commits WHERE episode_id IN ({_marks(episode_ids)})",
            episode_ids)}

    def record_forgotten(self, repo_id: str, episode_id: str, commit: str | None = None) -> None:
        """Remember (as hashes) that an episode, and the commit it was imported from, were forgotten."""
        self.conn.execute(
            "INSERT INTO forgotten_episodes(id_hash, repo_id, commit_hash, forgotten_at) VALUES (?,?,?,?)"
            " ON CONFLICT(id_hash) DO UPDATE SET repo_id = excluded.repo_id, commit_hash = excluded.commit_hash,"
            " forgotten_at = excluded.forgotten_at",
            (forgotten_hash(repo_id, episode_id), repo_id, forgotten_hash(repo_id, commit) if commit else None,
             time.time()))

    def is_forgotten(self, repo_id: str, episode_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM forgotten_episodes WHERE id_hash = ?",
                                 (forgotten_hash(repo_id, episode_id),)).fetchone() is not None

    def is_forgotten_commit(self, repo_id: str, sha: str) -> bool:
        """True when an episode imported from commit `sha` was forgotten: history import must skip it."""
        return self.conn.execute("SELECT 1 FROM forgotten_episodes WHERE repo_id = ? AND commit_hash = ?",
                                 (repo_id, forgotten_hash(repo_id, sha))).fetchone() is not None

    def delete_episodes(self, episode_ids: list[str]) -> None:
        """Delete the episodes and every row naming them, with the freed pages overwritten
        (`secure_delete`). Call `erase_freed_pages` after the transaction: the WAL still holds the
        old page images until it is checkpointed."""
        if not episode_ids:
            return
        self.conn.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable in the file
        marks = _marks(episode_ids)
        for table, column in EPISODE_ROWS:
            self.conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", episode_ids)
        self.conn.execute(f"DELETE FROM episodes WHERE id IN ({marks})", episode_ids)

    def erase_freed_pages(self) -> None:
        """Copy the WAL's (zeroed) pages back into the file and truncate it: deleted text leaves the disk."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
