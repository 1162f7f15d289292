"""The store's statements on the adapter registry's tables (`adapters`, `adapter_episodes`).

A mixin of `Store` (store/episodes.py). The registry's rules (which version is promoted, what a
rollback does, the pointer file that is the truth about what `do` loads) stay in
learning/registry.py; here are only the rows.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

from learnagent.store.records import AdapterStatus, AdapterVersion, from_row

_SELECT = ("SELECT a.*, (SELECT COUNT(*) FROM adapter_episodes ae WHERE ae.repo_id = a.repo_id"
           " AND ae.version = a.version) AS episodes FROM adapters a")
_CHUNK = 500  # ids per IN (...): well under any database's limit on parameters


def _adapter(row) -> AdapterVersion:
    return from_row(AdapterVersion, row, metrics=json.loads(row["metrics"] or "{}"), tainted=bool(row["tainted"]))


class AdapterRows:
    # ---- reading --------------------------------------------------------------------------------
    def adapter(self, repo_id: str, version: str) -> AdapterVersion | None:
        row = self.conn.execute(_SELECT + " WHERE a.repo_id = ? AND a.version = ?", (repo_id, version)).fetchone()
        return None if row is None else _adapter(row)

    def adapters(self, repo_id: str, *, status: AdapterStatus | None = None,
                 newest_first: bool = True) -> list[AdapterVersion]:
        """The repository's adapter versions (only those with `status`, when given)."""
        sql, args = _SELECT + " WHERE a.repo_id = ?", [repo_id]
        if status is not None:
            sql += " AND a.status = ?"
            args.append(status)
        sql += " ORDER BY a.version" + (" DESC" if newest_first else "")
        return [_adapter(r) for r in self.conn.execute(sql, args)]

    def adapter_episode_ids(self, repo_id: str, version: str) -> list[str]:
        """The episodes `version` itself was trained on (not its ancestors')."""
        return [r["episode_id"] for r in self.conn.execute(
            "SELECT episode_id FROM adapter_episodes WHERE repo_id = ? AND version = ? ORDER BY episode_id",
            (repo_id, version))]

    def adapters_trained_on(self, repo_id: str, episode_ids: Iterable[str]) -> set[str]:
        """Versions trained directly on any of `episode_ids`."""
        ids, found = list(episode_ids), set()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            found.update(r["version"] for r in self.conn.execute(
                "SELECT DISTINCT version FROM adapter_episodes WHERE repo_id = ?"
                f" AND episode_id IN ({','.join('?' * len(chunk))})", (repo_id, *chunk)))
        return found

    def tainted_adapter_versions(self, repo_id: str) -> list[str]:
        """Versions trained on a forgotten episode: sleep must not continue training from them."""
        return [r["version"] for r in self.conn.execute(
            "SELECT version FROM adapters WHERE repo_id = ? AND tainted = 1 ORDER BY version", (repo_id,))]

    # ---- writing --------------------------------------------------------------------------------
    def add_adapter(self, repo_id: str, version: str, *, path: str, parent: str | None, method: str,
                    base_model: str) -> None:
        """A new 'candidate' row (a reserved version number)."""
        self.conn.execute(
            "INSERT INTO adapters(repo_id, version, path, parent, method, base_model, created_at, status)"
            " VALUES (?,?,?,?,?,?,?, 'candidate')", (repo_id, version, path, parent, method, base_model, time.time()))

    def set_adapter_metrics(self, repo_id: str, version: str, metrics: dict) -> None:
        self.conn.execute("UPDATE adapters SET metrics = ? WHERE repo_id = ? AND version = ?",
                          (json.dumps(metrics), repo_id, version))

    def add_adapter_episodes(self, repo_id: str, version: str, episode_ids: Iterable[str]) -> None:
        """Record what `version` was trained on (again is a no-op)."""
        self.conn.executemany(
            "INSERT INTO adapter_episodes(repo_id, version, episode_id) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            [(repo_id, version, e) for e in episode_ids])

    def set_adapter_status(self, repo_id: str, version: str, status: AdapterStatus, reason: str | None) -> None:
        self.conn.execute("UPDATE adapters SET status = ?, reason = ? WHERE repo_id = ? AND version = ?",
                          (status, reason, repo_id, version))

    def retire_promoted(self, repo_id: str, *, keep: str | None, reason: str, keep_reason: bool = False) -> None:
        """Every 'promoted' row but `keep`'s becomes 'retired' with `reason` (or, with `keep_reason`, the
        reason it already had, `reason` only where it had none)."""
        new_reason = "COALESCE(reason, ?)" if keep_reason else "?"
        sql, args = (f"UPDATE adapters SET status = 'retired', reason = {new_reason}"
                     " WHERE repo_id = ? AND status = 'promoted'"), [reason, repo_id]
        if keep is not None:
            sql += " AND version != ?"
            args.append(keep)
        self.conn.execute(sql, args)

    def mark_adapters_tainted(self, repo_id: str, versions: Iterable[str]) -> None:
        self.conn.executemany("UPDATE adapters SET tainted = 1 WHERE repo_id = ? AND version = ?",
                              [(repo_id, v) for v in versions])

    def restore_promoted(self, repo_id: str, version: str) -> None:
        """Mark `version` 'promoted' again (its reason kept): the pointer file says it is."""
        self.conn.execute("UPDATE adapters SET status = 'promoted' WHERE repo_id = ? AND version = ?"
                          " AND status != 'promoted'", (repo_id, version))
