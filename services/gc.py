"""`learnagent gc`: remove the episode folders and branches of episodes that are over.

Cross-layer (services/): it reads the store, removes folders and branches with agent/worktree.py's
hardened git, and sandbox/tmpdirs.py's orphans. The CLI passes the Repository it resolved.

An episode's git traces are its folder (a checkout with its own .git, under `repo.worktrees_dir`;
linked worktrees of older versions too) and its branch `learnagent/<id>`. They go when the episode is dead:
- status 'running' but its process is gone (a crash, SIGKILL, a reboot): marked 'interrupted';
- status 'interrupted' or 'failed' (a failed run's folder is removed by run_episode; an older one's may be left);
- finished with a decided outcome (accepted, edited, rejected, reverted);
- not in the store at all (forgotten, or recorded while `logs off`): the worktree goes, the
  branch only when the episode was forgotten (an unrecorded run's branch may be the user's work).
- finished with outcome 'pending' but its `do` process is gone (killed at the verdict prompt, or
  its output closed): nobody can decide it any more; marked 'interrupted';
- applied to the working tree, with a folder or branch left over.
Never touched: a live run (its pid answers on this host and started when the episode's did), a
`do` still waiting for the verdict, and an outcome 'kept' (the user said to keep it).

Also, for any repository: sandbox private tmp folders whose process is gone (`kill -9` skips the
Sandbox's own cleanup); `sandbox_items` below, the rules in `sandbox/tmpdirs.py`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from learnagent.agent.worktree import BRANCH_PREFIX, git, remove_worktree
from learnagent.core.processes import pid_alive
from learnagent.core.repository import Repository
from learnagent.sandbox import tmpdirs

DECIDED = ("accepted", "edited", "rejected", "reverted", "unchanged")  # records.DECIDED_OUTCOMES + unchanged
# A worktree with no episode row may belong to a `do` that is between creating its worktree
# and writing its first row; leave young ones alone.
UNKNOWN_GRACE_S = 600


@dataclass
class GcItem:
    episode_id: str
    what: str  # worktree | branch | episode | sandbox tmp
    target: str  # a path, a branch name, or the new status
    reason: str
    done: bool = False


def run_is_live(meta: dict, host: str | None = None) -> bool:
    """True unless the process an episode's `meta` records (pid, host, pid_start) is known to be gone.

    A run recorded on another host (a shared home directory) cannot be checked: assume live.
    """
    pid, run_host = meta.get("pid"), meta.get("host")
    if not isinstance(pid, int):
        return False  # a running episode that never recorded its pid is from an old crash
    if run_host and run_host != (host or socket.gethostname()):
        return True
    started = meta.get("pid_start")
    return pid_alive(pid, started if isinstance(started, int) else None)


def _git(root: Path, *args: str) -> str:
    return git(root, *args, check=False)


def _has_own_commits(root: Path, branch: str) -> bool:
    """Whether `branch` holds commits no other (non-learnagent) branch has: an unrecorded run's work."""
    out = _git(root, "rev-list", "--count", branch, "--not", f"--exclude={BRANCH_PREFIX}*", "--branches")
    return out.strip() != "0"


def plan(store, repo: Repository, *, now: float | None = None) -> list[GcItem]:
    """What `gc` would remove in `repo`, and why."""
    root = repo.work_tree
    now = time.time() if now is None else now
    repo_id = repo.key
    wt_dir = repo.worktrees_dir
    worktrees = {p.name: p for p in wt_dir.iterdir() if p.is_dir()} if wt_dir.is_dir() else {}
    branches = {line.strip()[len(BRANCH_PREFIX):]: line.strip() for line in
                _git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads/" + BRANCH_PREFIX).splitlines()
                if line.strip()}
    running = store.running_episode_ids(repo_id)
    items: list[GcItem] = []
    for eid in sorted(set(worktrees) | set(branches) | set(running)):
        ep = store.find_episode(eid)
        wt, br = worktrees.get(eid), branches.get(eid)
        if ep is None:
            forgotten = store.is_forgotten(repo_id, eid)
            if not forgotten and wt is not None and now - wt.stat().st_mtime <= UNKNOWN_GRACE_S:
                continue
            if wt is not None:
                items.append(GcItem(eid, "worktree", str(wt), "forgotten" if forgotten else "not in the store"))
            if br is not None and (forgotten or not _has_own_commits(root, br)):
                items.append(GcItem(eid, "branch", br, "forgotten" if forgotten else "not in the store, no commits"))
            continue
        if ep.outcome == "kept":
            continue
        if ep.status == "running":
            if run_is_live(ep.meta):
                continue
            reason = "died: its process is gone"
            items.append(GcItem(eid, "episode", "interrupted", reason))
        elif ep.status in ("interrupted", "failed"):
            reason = f"run {ep.status}"
        elif ep.outcome in DECIDED:
            reason = f"outcome {ep.outcome}"
        elif ep.meta.get("applied"):
            reason = "applied to the working tree"
        elif run_is_live(ep.meta):
            continue  # its `do` is still waiting for the user's verdict
        else:
            # finished, but its `do` ended before the verdict (killed, or its output closed
            # before `do` could clean up): no one can accept it any more
            reason = "its do ended before the verdict"
            items.append(GcItem(eid, "episode", "interrupted", reason))
        if wt is not None:
            items.append(GcItem(eid, "worktree", str(wt), reason))
        if br is not None:
            items.append(GcItem(eid, "branch", br, reason))
    return items


def sandbox_items(tmp_root: Path | None = None, now: float | None = None) -> list[GcItem]:
    """Orphaned sandbox tmp folders (their process is gone), in any repository's name."""
    return [GcItem("-", "sandbox tmp", str(path), reason) for path, reason in tmpdirs.orphans(tmp_root, now)]


def collect(store, repo: Repository, *, dry_run: bool = False, now: float | None = None,
            tmp_root: Path | None = None) -> list[GcItem]:
    """Carry out `plan` and remove orphaned sandbox tmp folders (unless dry_run); returns the items with
    `done` set."""
    root = repo.work_tree
    items = plan(store, repo, now=now) + sandbox_items(tmp_root, now)
    if dry_run:
        return items
    for item in items:
        if item.what == "sandbox tmp":
            item.done = tmpdirs.remove_tree(item.target)
        elif item.what == "episode":
            store.mark_interrupted(item.episode_id, f"{item.reason} (found by gc)",
                                   statuses=("running", "finished", "budget_exceeded"))
            item.done = True
        elif item.what == "worktree":  # remove_worktree follows no symlink; old linked worktrees too
            try:
                remove_worktree(root, Path(item.target), None, delete_branch=False)
            except OSError as exc:  # still written by a process the dead run left: the next gc retries
                item.reason += f" (not removed yet: {exc.strerror or exc}; a process may still use it)"
            item.done = not os.path.lexists(item.target)
        elif item.what == "branch":
            _git(root, "worktree", "prune")  # a branch checked out in a stale worktree cannot be deleted
            _git(root, "branch", "-D", item.target)
            item.done = not _git(root, "branch", "--list", item.target).strip()
    _git(root, "worktree", "prune")
    return items
