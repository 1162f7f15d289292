"""`learnagent forget`: delete episodes for good, in every layer that holds something of them.

    store: a hash of each id (and of an imported commit) is kept, so history import will not bring
           it back; the rows and everything hanging off them go, the freed pages are overwritten
           (`secure_delete`) and the WAL checkpointed, so the text is gone from disk
    learning: the registry marks the adapters trained on them tainted (descendants too) and moves
           the promoted pointer off a tainted one (the next sleep retrains without them)
    agent: their episode folders and branches go (a branch the user kept stays: theirs to delete)

The rows, the forgotten hashes and the taint are one transaction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.agent.worktree import git, remove_worktree
from learnagent.core.repository import StoredRepository
from learnagent.learning.registry import Registry
from learnagent.store.records import Episode


@dataclass
class ForgetResult:
    episodes: list[str] = field(default_factory=list)
    tainted_adapters: list[tuple[str, str]] = field(default_factory=list)  # (repo_id, version)
    removed_worktrees: list[str] = field(default_factory=list)
    removed_branches: list[str] = field(default_factory=list)
    kept_branches: list[str] = field(default_factory=list)  # outcome 'kept': the user's to delete


def forget(store, episodes: list[Episode], *, remove_git: bool = True) -> ForgetResult:
    """Delete `episodes` (from store.privacy.select_episodes) for good; see the module docstring."""
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
        # Each repository as the store knows it (its key keys its adapters folder): no checkout needed.
        by_repo: dict[StoredRepository, list[str]] = {}
        for ep in episodes:
            name = Path(ep.repo_path).name if ep.repo_path else ep.repo_id
            by_repo.setdefault(StoredRepository(ep.repo_id, name), []).append(ep.id)
        for stored, repo_ids in by_repo.items():
            registry = Registry(store, stored)
            result.tainted_adapters += [(registry.repo_id, v) for v in registry.mark_tainted(repo_ids)]
        store.delete_episodes(ids)
    store.erase_freed_pages()
    result.episodes = ids
    if remove_git:
        _remove_git_traces(episodes, result)
    return result


def _remove_git_traces(episodes: list[Episode], result: ForgetResult) -> None:
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
