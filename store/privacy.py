"""Privacy controls over the episode store: forget episodes, pause recording, check adapter files.

- `forget` deletes episodes with everything hanging off them, overwrites the freed pages
  (`PRAGMA secure_delete`) and checkpoints the WAL so the text is gone from disk, marks the
  adapters trained on them as tainted (the next sleep retrains without them), and keeps a
  hash of each id (and of an imported commit) so history import will not bring it back.
- `recording_enabled` / `set_recording`: the flag `learnagent do` checks (`learnagent logs off`).
- `verify_adapter`: a truncated or garbled safetensors file gives a one-line error, not a
  stack trace from deep inside the loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.errors import LearnagentError


class AdapterCorrupt(LearnagentError):
    pass


def _hash(repo_id: str, value: str) -> str:
    return hashlib.sha256(f"{repo_id}:{value}".encode()).hexdigest()


def _has_table(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


# ---- recording on/off ----------------------------------------------------------------------------

def recording_enabled(store, repo_id: str) -> bool:
    """False after `learnagent logs off` for this repository; True by default."""
    row = store.conn.execute("SELECT enabled FROM recording WHERE repo_id = ?", (repo_id,)).fetchone()
    return True if row is None else bool(row["enabled"])


def set_recording(store, repo_id: str, enabled: bool) -> None:
    store.conn.execute(
        "INSERT INTO recording(repo_id, enabled, changed_at) VALUES (?,?,?)"
        " ON CONFLICT(repo_id) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at",
        (repo_id, int(enabled), time.time()))


# ---- choosing what to forget ---------------------------------------------------------------------

def select_episodes(store, *, repo_id: str | None, ids: list[str] = (), since: float | None = None,
                    everything: bool = False) -> list[dict]:
    """Episodes named by id prefix, or started at/after `since`, or all of `repo_id`'s."""
    chosen: dict[str, None] = {}
    for prefix in ids:
        chosen[store.resolve_id(prefix)] = None
    if since is not None or everything:
        sql, args = "SELECT id FROM episodes WHERE 1 = 1", []
        if repo_id is not None:
            sql += " AND repo_id = ?"
            args.append(repo_id)
        if since is not None and not everything:
            sql += " AND started_at >= ?"
            args.append(since)
        for row in store.conn.execute(sql + " ORDER BY started_at", args):
            chosen[row["id"]] = None
    if not chosen:
        return []
    marks = ",".join("?" * len(chosen))
    return [dict(r) for r in store.conn.execute(
        f"SELECT e.id, e.repo_id, e.task, e.status, e.outcome, e.branch, e.worktree, e.source, e.started_at,"
        f" r.path AS repo_path FROM episodes e JOIN repos r ON r.id = e.repo_id WHERE e.id IN ({marks})"
        f" ORDER BY e.started_at", list(chosen))]


# ---- forgetting ------------------------------------------------------------------------------------

@dataclass
class ForgetResult:
    episodes: list[str] = field(default_factory=list)
    tainted_adapters: list[tuple[str, str]] = field(default_factory=list)  # (repo_id, version)
    removed_worktrees: list[str] = field(default_factory=list)
    removed_branches: list[str] = field(default_factory=list)
    kept_branches: list[str] = field(default_factory=list)  # outcome 'kept': the user's to delete


def _tables_referencing_episodes(conn) -> list[tuple[str, str]]:
    """(table, column) of every foreign key onto episodes(id); not all of them cascade."""
    out = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for fk in conn.execute(f"PRAGMA foreign_key_list('{table}')").fetchall():
            if fk["table"] == "episodes":
                out.append((table, fk["from"]))
    return out


def forget(store, episodes: list[dict], *, remove_git: bool = True) -> ForgetResult:
    """Delete `episodes` (rows from `select_episodes`) for good; see the module docstring."""
    result = ForgetResult()
    if not episodes:
        return result
    conn = store.conn
    ids = [ep["id"] for ep in episodes]
    marks = ",".join("?" * len(ids))
    commits: dict[str, str] = {}
    if _has_table(conn, "imported_commits"):
        commits = {r["episode_id"]: r["sha"] for r in conn.execute(
            f"SELECT episode_id, sha FROM imported_commits WHERE episode_id IN ({marks})", ids)}
    conn.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable in the file
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = time.time()
        for ep in episodes:
            sha = commits.get(ep["id"])
            conn.execute("INSERT OR REPLACE INTO forgotten_episodes(id_hash, repo_id, commit_hash, forgotten_at)"
                         " VALUES (?,?,?,?)", (_hash(ep["repo_id"], ep["id"]), ep["repo_id"],
                                               _hash(ep["repo_id"], sha) if sha else None, now))
        if _has_table(conn, "adapter_episodes"):
            # The registry owns adapter state: it taints descendants too and moves the promoted
            # pointer off a tainted adapter, so `do` stops loading it now, not after the next sleep.
            from learnagent.learning.registry import Registry

            by_repo: dict[str, list[str]] = {}
            for ep in episodes:
                by_repo.setdefault(ep["repo_path"], []).append(ep["id"])
            for repo_path, repo_ids in by_repo.items():
                registry = Registry(store, Path(repo_path))
                result.tainted_adapters += [(registry.repo_id, v) for v in registry.mark_tainted(repo_ids)]
            conn.execute(f"DELETE FROM adapter_episodes WHERE episode_id IN ({marks})", ids)
        for table, column in _tables_referencing_episodes(conn):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
        conn.execute(f"DELETE FROM episodes WHERE id IN ({marks})", ids)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    # The WAL still holds the old page images: copy back (zeroed) and truncate it.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    result.episodes = ids
    if remove_git:
        _remove_git_traces(episodes, result)
    return result


def _remove_git_traces(episodes: list[dict], result: ForgetResult) -> None:
    from learnagent.agent.worktree import git, remove_worktree  # git plumbing lives with the agent

    for ep in episodes:
        root = Path(ep["repo_path"])
        if not (root / ".git").exists():
            continue
        if ep.get("worktree") and os.path.lexists(ep["worktree"]):
            remove_worktree(root, Path(ep["worktree"]), None, delete_branch=False)
            result.removed_worktrees.append(ep["worktree"])
        branch = ep.get("branch")
        if not branch or not git(root, "branch", "--list", branch, check=False).strip():
            continue
        if ep.get("outcome") == "kept":
            result.kept_branches.append(branch)
        else:
            git(root, "branch", "-D", branch, check=False)
            result.removed_branches.append(branch)
    for root in {Path(ep["repo_path"]) for ep in episodes}:
        if (root / ".git").exists():
            git(root, "worktree", "prune", check=False)


def is_forgotten(store, repo_id: str, episode_id: str) -> bool:
    return store.conn.execute("SELECT 1 FROM forgotten_episodes WHERE id_hash = ?",
                              (_hash(repo_id, episode_id),)).fetchone() is not None


def is_forgotten_commit(store, repo_id: str, sha: str) -> bool:
    """True when an episode imported from commit `sha` was forgotten: history import must skip it."""
    return store.conn.execute("SELECT 1 FROM forgotten_episodes WHERE repo_id = ? AND commit_hash = ?",
                              (repo_id, _hash(repo_id, sha))).fetchone() is not None


def tainted_adapters(store, repo_id: str) -> list[str]:
    """Versions trained on a forgotten episode: sleep must not continue training from them."""
    if not _has_table(store.conn, "adapters"):
        return []
    return [r["version"] for r in store.conn.execute(
        "SELECT version FROM adapters WHERE repo_id = ? AND tainted = 1 ORDER BY version", (repo_id,))]


# ---- adapter files -------------------------------------------------------------------------------

def verify_safetensors(path: Path) -> dict:
    """Check a safetensors file's header and length without loading it; returns the header."""
    path = Path(path)
    how = "delete it and run `learnagent sleep` again, or roll back with `learnagent adapters`"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise AdapterCorrupt(f"{path} is truncated ({size} bytes, no header); {how}")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise AdapterCorrupt(f"{path} is truncated or not a safetensors file (header of {n} bytes in a "
                                     f"{size}-byte file); {how}")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise AdapterCorrupt(f"cannot read {path}: {exc.strerror or exc}; {how}") from None
    except (ValueError, UnicodeDecodeError):
        raise AdapterCorrupt(f"{path} has a garbled header (not a safetensors file); {how}") from None
    if not isinstance(header, dict):
        raise AdapterCorrupt(f"{path} has a garbled header (not a safetensors file); {how}")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise AdapterCorrupt(f"{path}: tensor '{name}' has no valid data offsets; {how}") from None
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise AdapterCorrupt(f"{path} is truncated: {size} bytes, the header promises {8 + n + end}; {how}")
    return header


def verify_adapter(path: Path) -> None:
    """Raise AdapterCorrupt (one line, with the way out) unless `path` is a loadable adapter.

    `path`: an adapter folder (adapter_config.json + adapter_model.safetensors) or a .safetensors file.
    """
    path = Path(path)
    how = "delete it and run `learnagent sleep` again, or roll back with `learnagent adapters`"
    if path.is_file():
        verify_safetensors(path)
        return
    if not path.is_dir():
        raise AdapterCorrupt(f"adapter {path} does not exist; {how}")
    config = path / "adapter_config.json"
    try:
        json.loads(config.read_text())
    except FileNotFoundError:
        raise AdapterCorrupt(f"adapter {path} has no adapter_config.json (incomplete); {how}") from None
    except ValueError:
        raise AdapterCorrupt(f"{config} is not valid JSON (truncated?); {how}") from None
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise AdapterCorrupt(f"adapter {path} has no .safetensors weights (incomplete); {how}")
    for file in weights:
        verify_safetensors(file)
