"""Versioned repo adapters: folders on disk, rows in the store, one atomic "promoted" pointer.

Layout under `repo.adapters_dir` (core/repository.py):

    v0001/            LoRA `save_pretrained` folder + metrics.json + lineage.json (written LAST:
                      its presence means the folder is complete)
    v0002/ ...
    PROMOTED          {"version": "v0002", "history": ["v0001"]} — what `do` loads

The PROMOTED file, not the database, is the source of truth for what is loaded: it is replaced
with `os.replace` only after the adapter folder is complete and fsynced, so a crash at any step
leaves either the old or the new pointer, both naming a loadable folder. The `adapters` table
(migration 0002) mirrors statuses for listing and reports and is reconciled with the pointer
whenever it is read (`sync`), which repairs a crash between the rename and the row update.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Iterable

from learnagent.core import home
from learnagent.core.errors import LearnagentError
from learnagent.core.repository import Repository

POINTER = "PROMOTED"
LINEAGE = "lineage.json"
METRICS = "metrics.json"
STATUSES = ("candidate", "promoted", "rejected", "retired")
_VERSION = re.compile(r"^v(\d{4,})$")


def version_name(number: int) -> str:
    return f"v{number:04d}"


def _checkpoint(step: str) -> None:
    """A named point between two steps of a multi-step write; tests make it raise to simulate a crash."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file of `folder` and the folders themselves, so a rename after it is durable."""
    folder = Path(folder)
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    _checkpoint(f"tmp-written:{path.name}")
    os.replace(tmp, path)
    _fsync_path(path.parent)


def is_complete(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / LINEAGE).is_file() and (folder / "adapter_config.json").is_file()


def read_pointer(adapters_root: Path) -> dict | None:
    path = Path(adapters_root) / POINTER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        return None
    data.setdefault("history", [])
    return data


def adapters_folder(repo: Repository | Path) -> Path:
    """The repository's adapters folder: the Repository's own; a bare path is resolved here."""
    return repo.adapters_dir if isinstance(repo, Repository) else home.adapters_dir(repo)


def promoted_adapter(repo: Repository | Path) -> tuple[str, Path] | None:
    """(version, folder) of the adapter `do` should load for this repository, or None.

    Reads only the pointer file (no database), so it is cheap. When the promoted folder is
    missing or incomplete (deleted by hand), it falls back to the most recent complete version
    in the promotion history rather than loading nothing.
    """
    return _promoted_in(adapters_folder(repo))


def _promoted_in(root: Path) -> tuple[str, Path] | None:
    pointer = read_pointer(root)
    if pointer is None:
        return None
    for version in [pointer["version"], *reversed(pointer["history"])]:
        if _VERSION.match(version) and is_complete(root / version):
            return version, root / version
    return None


def code_metrics(metrics: dict) -> dict | None:
    """An adapter's held-out code numbers (learning/behaviour.py's report): the gate's, measured when
    sleep made it (`metrics["code"]`), else the last `learnagent eval`'s. Variants: "base",
    "context", "adapter" (this version), and "previous" when the gate compared it with a parent."""
    return metrics.get("code") or (metrics.get("eval") or {}).get("code") or None


def list_adapters(repo_root: Path, store=None) -> list[dict]:
    """Every adapter of the repository, newest first (opens the default store when none is given)."""
    if store is not None:
        return Registry(store, repo_root).list()
    from learnagent.store.episodes import Store

    with Store() as own:
        return Registry(own, repo_root).list()


class Registry:
    def __init__(self, store, repo: Repository | Path):
        """`repo`: the Repository the CLI resolved (a bare path, as tests and stored paths give, is
        resolved here)."""
        if not isinstance(repo, Repository):
            repo = Path(repo).resolve()
        self.store = store
        self.conn = store.conn
        self.repo_root = repo.work_tree if isinstance(repo, Repository) else repo
        self.repo_id = store.ensure_repo(repo)
        self.root = adapters_folder(repo)

    # ---- reading --------------------------------------------------------------------
    def folder(self, version: str) -> Path:
        return self.root / version

    def get(self, version: str) -> dict:
        row = self.conn.execute("SELECT * FROM adapters WHERE repo_id = ? AND version = ?",
                                (self.repo_id, version)).fetchone()
        if row is None:
            raise LearnagentError(f"no adapter '{version}' for this repository (see `learnagent adapters list`)")
        return self._row(row)

    def list(self) -> list[dict]:
        self.sync()
        rows = self.conn.execute("SELECT * FROM adapters WHERE repo_id = ? ORDER BY version DESC",
                                 (self.repo_id,)).fetchall()
        return [self._row(r) for r in rows]

    def episodes_of(self, version: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT episode_id FROM adapter_episodes WHERE repo_id = ? AND version = ? ORDER BY episode_id",
            (self.repo_id, version))]

    def trained_episode_ids(self, version: str | None) -> set[str]:
        """Episodes in the lineage of `version`: its own and every ancestor's."""
        seen: set[str] = set()
        while version:
            seen.update(self.episodes_of(version))
            row = self.conn.execute("SELECT parent FROM adapters WHERE repo_id = ? AND version = ?",
                                    (self.repo_id, version)).fetchone()
            version = row["parent"] if row else None
        return seen

    def current(self) -> tuple[str, Path] | None:
        return _promoted_in(self.root)

    def _row(self, row) -> dict:
        out = dict(row)
        out["metrics"] = json.loads(out.get("metrics") or "{}")
        out["tainted"] = bool(out.get("tainted"))
        out["episodes"] = self.conn.execute(
            "SELECT COUNT(*) FROM adapter_episodes WHERE repo_id = ? AND version = ?",
            (self.repo_id, out["version"])).fetchone()[0]
        return out

    # ---- candidates -----------------------------------------------------------------
    def resumable(self) -> dict | None:
        """The newest candidate whose training never finished (its folder is not complete)."""
        for row in self.conn.execute("SELECT * FROM adapters WHERE repo_id = ? AND status = 'candidate'"
                                     " ORDER BY version DESC", (self.repo_id,)):
            if not is_complete(self.folder(row["version"])):
                return self._row(row)
        return None

    def reserve(self, *, parent: str | None, method: str, base_model: str) -> str:
        """Reserve the next version number (a 'candidate' row) so an interrupted run can resume into it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            numbers = [int(m.group(1)) for r in self.conn.execute(
                "SELECT version FROM adapters WHERE repo_id = ?", (self.repo_id,)) if (m := _VERSION.match(r[0]))]
            numbers += [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
            version = version_name(max(numbers, default=0) + 1)
            self.conn.execute(
                "INSERT INTO adapters(repo_id, version, path, parent, method, base_model, created_at, status)"
                " VALUES (?,?,?,?,?,?,?, 'candidate')",
                (self.repo_id, version, str(self.folder(version)), parent, method, base_model, time.time()))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return version

    def finish(self, version: str, *, metrics: dict, episode_ids: Iterable[str], config: dict) -> None:
        """Seal a trained candidate: metrics.json, lineage.json (last, marks it complete), the DB rows."""
        row = self.get(version)
        folder = self.folder(version)
        if not (folder / "adapter_config.json").is_file():
            raise LearnagentError(f"{folder} holds no saved adapter (adapter_config.json missing)")
        episode_ids = sorted(set(episode_ids))
        write_json_atomic(folder / METRICS, metrics)
        _checkpoint("metrics-written")
        fsync_tree(folder)
        lineage = {"version": version, "parent": row["parent"], "method": row["method"],
                   "base_model": row["base_model"], "created_at": row["created_at"],
                   "finished_at": time.time(), "episodes": episode_ids, "config": config}
        write_json_atomic(folder / LINEAGE, lineage)
        _checkpoint("lineage-written")
        # adapter weights are distilled from the user's episodes: private like the store (core/home.py)
        home.make_private([folder, *folder.rglob("*")], quiet=True)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("UPDATE adapters SET metrics = ? WHERE repo_id = ? AND version = ?",
                              (json.dumps(metrics), self.repo_id, version))
            self.conn.executemany(
                "INSERT OR IGNORE INTO adapter_episodes(repo_id, version, episode_id) VALUES (?,?,?)",
                [(self.repo_id, version, e) for e in episode_ids])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def update_metrics(self, version: str, **values) -> None:
        """Merge `values` into a version's stored metrics (e.g. eval results for the learning curve)."""
        metrics = self.get(version)["metrics"] | values
        self.conn.execute("UPDATE adapters SET metrics = ? WHERE repo_id = ? AND version = ?",
                          (json.dumps(metrics), self.repo_id, version))

    def reject(self, version: str, reason: str) -> None:
        self._set_status(version, "rejected", reason)

    def _set_status(self, version: str, status: str, reason: str | None) -> None:
        self.conn.execute("UPDATE adapters SET status = ?, reason = ? WHERE repo_id = ? AND version = ?",
                          (status, reason, self.repo_id, version))

    # ---- promotion ------------------------------------------------------------------
    def promote(self, version: str, reason: str = "passed the gate") -> None:
        """Make `version` the one `do` loads. Atomic: the pointer file is replaced in one rename."""
        self._switch(version, reason, push_current=True)

    def use(self, version: str) -> None:
        """Promote an existing version by hand (`learnagent adapters use`)."""
        row = self.get(version)
        if row["tainted"]:
            raise LearnagentError(f"{version} was trained on forgotten episodes and cannot be used")
        self._switch(version, "chosen by hand (adapters use)", push_current=True)

    def rollback(self) -> str | None:
        """Return to the previously promoted adapter; None when there was none (back to the base model)."""
        pointer = read_pointer(self.root)
        if pointer is None:
            raise LearnagentError("no adapter is promoted for this repository; nothing to roll back")
        history = [v for v in pointer["history"] if is_complete(self.folder(v))]
        leaving = pointer["version"]
        if not history:
            self._clear_pointer()
            self._retire(leaving, "rolled back to the base model")
            return None
        target = history[-1]
        self._write_pointer({"version": target, "history": history[:-1], "promoted_at": time.time()})
        _checkpoint("pointer-replaced")
        self._retire(leaving, f"rolled back to {target}")
        self.sync()
        return target

    def _switch(self, version: str, reason: str, *, push_current: bool) -> None:
        folder = self.folder(version)
        if not is_complete(folder):
            raise LearnagentError(f"adapter {version} is not complete on disk ({folder}); it cannot be promoted")
        fsync_tree(folder)
        _checkpoint("folder-synced")
        pointer = read_pointer(self.root)
        history = list(pointer["history"]) if pointer else []
        if pointer and push_current and pointer["version"] != version:
            history.append(pointer["version"])
        history = [v for v in history if v != version]
        self._write_pointer({"version": version, "history": history, "promoted_at": time.time()})
        _checkpoint("pointer-replaced")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("UPDATE adapters SET status = 'retired', reason = ? WHERE repo_id = ?"
                              " AND status = 'promoted' AND version != ?",
                              (f"superseded by {version}", self.repo_id, version))
            self._set_status(version, "promoted", reason)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _retire(self, version: str, reason: str) -> None:
        self._set_status(version, "retired", reason)

    def _write_pointer(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / POINTER, data)

    def _clear_pointer(self) -> None:
        (self.root / POINTER).unlink(missing_ok=True)
        _fsync_path(self.root)

    def sync(self) -> None:
        """Make the table agree with the pointer file (repairs a crash between rename and row update)."""
        current = self.current()
        version = current[0] if current else None
        self.conn.execute("UPDATE adapters SET status = 'retired', reason = COALESCE(reason, 'superseded')"
                          " WHERE repo_id = ? AND status = 'promoted' AND version IS NOT ?", (self.repo_id, version))
        if version:
            self.conn.execute("UPDATE adapters SET status = 'promoted' WHERE repo_id = ? AND version = ?"
                              " AND status != 'promoted'", (self.repo_id, version))

    # ---- privacy --------------------------------------------------------------------
    def mark_tainted(self, episode_ids: Iterable[str]) -> list[str]:
        """Flag every adapter trained on any of `episode_ids` (directly or through an ancestor).

        If the promoted adapter is among them, fall back to the newest untainted one in the
        promotion history (or to no adapter). Returns the tainted versions.
        """
        ids = list(episode_ids)
        tainted: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            tainted.update(r[0] for r in self.conn.execute(
                f"SELECT DISTINCT version FROM adapter_episodes WHERE repo_id = ? AND episode_id IN ({marks})",
                (self.repo_id, *chunk)))
        rows = self.conn.execute("SELECT version, parent FROM adapters WHERE repo_id = ?", (self.repo_id,)).fetchall()
        changed = True
        while changed:  # children inherit their parent's training
            changed = False
            for r in rows:
                if r["parent"] in tainted and r["version"] not in tainted:
                    tainted.add(r["version"])
                    changed = True
        for v in tainted:
            self.conn.execute("UPDATE adapters SET tainted = 1 WHERE repo_id = ? AND version = ?", (self.repo_id, v))
        pointer = read_pointer(self.root)
        if pointer and pointer["version"] in tainted:
            clean = [v for v in pointer["history"] if v not in tainted and is_complete(self.folder(v))]
            if clean:
                self._write_pointer({"version": clean[-1], "history": clean[:-1], "promoted_at": time.time()})
            else:
                self._clear_pointer()
            self._retire(pointer["version"], "trained on forgotten episodes")
            self.sync()
        return sorted(tainted)
