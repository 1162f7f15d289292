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
from learnagent.core.repository import Repository, StoredRepository
from learnagent.runtime import serving
from learnagent.store.records import AdapterStatus, AdapterVersion

POINTER = "PROMOTED"
LINEAGE = "lineage.json"
METRICS = "metrics.json"
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


def _checked(repo: Repository | StoredRepository) -> Repository | StoredRepository:
    """The repository as the CLI resolved it; a bare path is a caller's bug (resolve it at the edge:
    `find_repository(path)`, or `Repository.at(path)` for a known top level)."""
    if not isinstance(repo, (Repository, StoredRepository)):
        raise TypeError(f"expected a Repository or StoredRepository, got {type(repo).__name__}: resolve it at the "
                        "CLI edge (core.repository.find_repository)")
    return repo


def promoted_adapter(repo: Repository | StoredRepository) -> tuple[str, Path] | None:
    """(version, folder) of the adapter `do` should load for this repository, or None.

    Reads only the pointer file (no database), so it is cheap. When the promoted folder is
    missing or incomplete (deleted by hand), it falls back to the most recent complete version
    in the promotion history rather than loading nothing.
    """
    return _promoted_in(_checked(repo).adapters_dir)


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


def list_adapters(repo: Repository | StoredRepository, store=None) -> list[AdapterVersion]:
    """Every adapter of the repository, newest first (opens the default store when none is given)."""
    if store is not None:
        return Registry(store, repo).list()
    from learnagent.store.episodes import Store

    with Store() as own:
        return Registry(own, repo).list()


class Registry:
    def __init__(self, store, repo: Repository | StoredRepository):
        """`repo`: the Repository the CLI resolved, or a StoredRepository (no checkout: repo_root is None)."""
        self.store = store
        self.repo_root = _checked(repo).work_tree
        self.repo_id = store.ensure_repo(repo)
        self.root = repo.adapters_dir

    # ---- reading --------------------------------------------------------------------
    def folder(self, version: str) -> Path:
        return self.root / version

    def get(self, version: str) -> AdapterVersion:
        row = self.store.adapter(self.repo_id, version)
        if row is None:
            raise LearnagentError(f"no adapter '{version}' for this repository (see `learnagent adapters list`)")
        return row

    def list(self) -> list[AdapterVersion]:
        """Every version, newest first."""
        self.sync()
        return self.store.adapters(self.repo_id)

    def candidates(self) -> list[AdapterVersion]:
        """The 'candidate' versions (reserved; training, or sealed and not yet decided), oldest first."""
        return self.store.adapters(self.repo_id, status="candidate", newest_first=False)

    def episodes_of(self, version: str) -> list[str]:
        return self.store.adapter_episode_ids(self.repo_id, version)

    def trained_episode_ids(self, version: str | None) -> set[str]:
        """Episodes in the lineage of `version`: its own and every ancestor's."""
        seen: set[str] = set()
        while version:
            seen.update(self.episodes_of(version))
            row = self.store.adapter(self.repo_id, version)
            version = row.parent if row else None
        return seen

    def current(self) -> tuple[str, Path] | None:
        return _promoted_in(self.root)

    # ---- candidates -----------------------------------------------------------------
    def resumable(self) -> AdapterVersion | None:
        """The newest candidate whose training never finished (its folder is not complete)."""
        for row in reversed(self.candidates()):
            if not is_complete(self.folder(row.version)):
                return row
        return None

    def reserve(self, *, parent: str | None, method: str, base_model: str) -> str:
        """Reserve the next version number (a 'candidate' row) so an interrupted run can resume into it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.store.transaction():
            names = [r.version for r in self.store.adapters(self.repo_id)] + [p.name for p in self.root.iterdir()]
            numbers = [int(m.group(1)) for name in names if (m := _VERSION.match(name))]
            version = version_name(max(numbers, default=0) + 1)
            self.store.add_adapter(self.repo_id, version, path=str(self.folder(version)), parent=parent,
                                   method=method, base_model=base_model)
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
        lineage = {"version": version, "parent": row.parent, "method": row.method,
                   "base_model": row.base_model, "created_at": row.created_at,
                   "finished_at": time.time(), "episodes": episode_ids, "config": config}
        write_json_atomic(folder / LINEAGE, lineage)
        _checkpoint("lineage-written")
        # adapter weights are distilled from the user's episodes: private like the store (core/home.py)
        home.make_private([folder, *folder.rglob("*")], quiet=True)
        with self.store.transaction():
            self.store.set_adapter_metrics(self.repo_id, version, metrics)
            self.store.add_adapter_episodes(self.repo_id, version, episode_ids)

    def update_metrics(self, version: str, **values) -> None:
        """Merge `values` into a version's stored metrics (e.g. eval results for the learning curve)."""
        with self.store.transaction():
            self.store.set_adapter_metrics(self.repo_id, version, self.get(version).metrics | values)

    def reject(self, version: str, reason: str) -> None:
        self._set_status(version, "rejected", reason)

    def _set_status(self, version: str, status: AdapterStatus, reason: str | None) -> None:
        self.store.set_adapter_status(self.repo_id, version, status, reason)

    # ---- promotion ------------------------------------------------------------------
    def promote(self, version: str, reason: str = "passed the gate") -> None:
        """Make `version` the one `do` loads. Atomic: the pointer file is replaced in one rename."""
        self._switch(version, reason, push_current=True)

    def use(self, version: str) -> None:
        """Promote an existing version by hand (`learnagent adapters use`)."""
        row = self.get(version)
        if row.tainted:
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
        with self.store.transaction():
            self.store.retire_promoted(self.repo_id, keep=version, reason=f"superseded by {version}")
            self._set_status(version, "promoted", reason)

    def _retire(self, version: str, reason: str) -> None:
        self._set_status(version, "retired", reason)

    def _write_pointer(self, data: dict) -> None:
        serving.before_pointer_change(self.repo_id, data["version"], self.folder(data["version"]))
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / POINTER, data)

    def _clear_pointer(self) -> None:
        (self.root / POINTER).unlink(missing_ok=True)
        _fsync_path(self.root)

    def sync(self) -> None:
        """Make the table agree with the pointer file (repairs a crash between rename and row update)."""
        current = self.current()
        version = current[0] if current else None
        with self.store.transaction():
            self.store.retire_promoted(self.repo_id, keep=version, reason="superseded", keep_reason=True)
            if version:
                self.store.restore_promoted(self.repo_id, version)

    # ---- privacy --------------------------------------------------------------------
    def mark_tainted(self, episode_ids: Iterable[str]) -> list[str]:
        """Flag every adapter trained on any of `episode_ids` (directly or through an ancestor), and
        move the promoted pointer off a flagged one (`leave_tainted`). Returns the tainted versions."""
        tainted = tainted_by(self.store, self.repo_id, episode_ids)
        self.store.mark_adapters_tainted(self.repo_id, tainted)
        self.leave_tainted()
        return sorted(tainted)

    def leave_tainted(self) -> str | None:
        """When the promoted adapter is flagged tainted, fall back to the newest untainted one in the
        promotion history (or to no adapter); returns the version left, else None. A developer's
        `forget` on a team store flags the team's adapters there but cannot reach the GPU box's
        pointer: the box's next `sleep` calls this first."""
        pointer = read_pointer(self.root)
        if not pointer:
            return None
        tainted = {r.version for r in self.store.adapters(self.repo_id) if r.tainted}
        if pointer["version"] not in tainted:
            return None
        clean = [v for v in pointer["history"] if v not in tainted and is_complete(self.folder(v))]
        if clean:
            self._write_pointer({"version": clean[-1], "history": clean[:-1], "promoted_at": time.time()})
        else:
            self._clear_pointer()
        self._retire(pointer["version"], "trained on forgotten episodes")
        self.sync()
        return pointer["version"]


def tainted_by(store, repo_id: str, episode_ids: Iterable[str]) -> set[str]:
    """The repository's adapter versions trained on any of `episode_ids`, directly or through an
    ancestor (a child continues its parent's training, so it carries what the parent learnt)."""
    tainted = store.adapters_trained_on(repo_id, episode_ids)
    rows = store.adapters(repo_id)
    changed = True
    while changed:
        changed = False
        for r in rows:
            if r.parent in tainted and r.version not in tainted:
                tainted.add(r.version)
                changed = True
    return tainted
