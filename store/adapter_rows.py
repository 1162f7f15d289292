"""The store's statements on the adapter registry's tables (`adapters`, `adapter_episodes`).

A mixin of `Store` (store/episodes.py). The registry's rules (which version is promoted, what a
rollback does, the pointer file) stay in learning/registry.py; here are only the rows.
"""

from __future__ import annotations


class AdapterRows:
    def tainted_adapter_versions(self, repo_id: str) -> list[str]:
        """Versions trained on a forgotten episode: sleep must not continue training from them."""
        return [r["version"] for r in self.conn.execute(
            "SELECT version FROM adapters WHERE repo_id = ? AND tainted = 1 ORDER BY version", (repo_id,))]
