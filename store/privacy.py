"""Privacy controls over the episode store: forget episodes, pause recording, check adapter files.

- `forget` deletes episodes with everything hanging off them, overwrites the freed pages
  (`PRAGMA secure_delete`) and checkpoints the WAL so the text is gone from disk, marks the
  adapters trained on them as tainted (the next sleep retrains without them), and keeps a
  hash of each id (and of an imported commit) so history import will not bring it back.
- the recording switch `learnagent do` checks (`learnagent logs off`) is the store's
  (`Store.recording_enabled` / `set_recording`), as are all the statements: store/privacy_rows.py.
- `verify_adapter`: a truncated or garbled safetensors file gives a one-line error, not a
  stack trace from deep inside the loader.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.errors import LearnagentError
from learnagent.store.records import Episode


class AdapterCorrupt(LearnagentError):
    pass


# ---- choosing what to forget ---------------------------------------------------------------------

def select_episodes(store, *, repo_id: str | None, ids: list[str] = (), since: float | None = None,
                    everything: bool = False) -> list[Episode]:
    """Episodes named by id prefix, or started at/after `since`, or all of `repo_id`'s; oldest first."""
    chosen = [store.resolve_id(prefix) for prefix in ids]
    if since is not None or everything:
        chosen += store.episode_ids(repo_id=repo_id, since=None if everything else since)
    return store.episodes_by_id(chosen)


# ---- forgetting ------------------------------------------------------------------------------------

@dataclass
class ForgetResult:
    episodes: list[str] = field(default_factory=list)
    tainted_adapters: list[tuple[str, str]] = field(default_factory=list)  # (repo_id, version)
    removed_worktrees: list[str] = field(default_factory=list)
    removed_branches: list[str] = field(default_factory=list)
    kept_branches: list[str] = field(default_factory=list)  # outcome 'kept': the user's to delete


def forget(store, episodes: list[Episode], *, remove_git: bool = True) -> ForgetResult:
    """Delete `episodes` (from `select_episodes`) for good; see the module docstring."""
    result = ForgetResult()
    if not episodes:
        return result
    ids = [ep.id for ep in episodes]
    commits = store.imported_commits_of(ids)
    with store.transaction():
        for ep in episodes:
            store.record_forgotten(ep.repo_id, ep.id, commits.get(ep.id))
        # The registry owns adapter state: it taints descendants too and moves the promoted
        # pointer off a tainted adapter, so `do` stops loading it now, not after the next sleep.
        from learnagent.learning.registry import Registry

        by_repo: dict[str, list[str]] = {}
        for ep in episodes:
            by_repo.setdefault(ep.repo_path, []).append(ep.id)
        for repo_path, repo_ids in by_repo.items():
            registry = Registry(store, Path(repo_path))
            result.tainted_adapters += [(registry.repo_id, v) for v in registry.mark_tainted(repo_ids)]
        store.delete_episodes(ids)
    store.erase_freed_pages()
    result.episodes = ids
    if remove_git:
        _remove_git_traces(episodes, result)
    return result


def _remove_git_traces(episodes: list[Episode], result: ForgetResult) -> None:
    from learnagent.agent.worktree import git, remove_worktree  # git plumbing lives with the agent

    for ep in episodes:
        root = Path(ep.repo_path)
        if not (root / ".git").exists():
            continue
        if ep.worktree and os.path.lexists(ep.worktree):
            remove_worktree(root, Path(ep.worktree), None, delete_branch=False)
            result.removed_worktrees.append(ep.worktree)
        branch = ep.branch
        if not branch or not git(root, "branch", "--list", branch, check=False).strip():
            continue
        if ep.outcome == "kept":
            result.kept_branches.append(branch)
        else:
            git(root, "branch", "-D", branch, check=False)
            result.removed_branches.append(branch)
    for root in {Path(ep.repo_path) for ep in episodes}:
        if (root / ".git").exists():
            git(root, "worktree", "prune", check=False)


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
