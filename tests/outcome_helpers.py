"""Shared helpers for the outcome tests: real git repositories, episodes made through the Store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from learnagent.core.repository import Repository

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_EDITOR": "true", "GIT_SEQUENCE_EDITOR": "true"}


def git(cwd, *args, check=True, env=None, input=None):
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=full_env, input=input)
    if check and out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr}{out.stdout}")
    return out.stdout


def head(repo) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def write(repo, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = Path(repo) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def propose(store, repo, files: dict[str, str], *, task="a task", applied=True, outcome=None,
            started_at=None, model="tiny", adapter=None, branch="learnagent/test") -> tuple[str, str]:
    """What `learnagent do` + accept leaves behind: the agent's files in the working tree (uncommitted)
    and an episode whose final_diff is that change against HEAD."""
    base = head(repo)
    write(repo, files)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "--no-color", base)
    git(repo, "reset", "-q")
    repo_id = store.ensure_repo(Repository.at(Path(repo)))
    eid = store.create_episode(repo_id, task, base_commit=base, branch=branch, model=model,
                               adapter_version=adapter, started_at=started_at)
    store.finish_episode(eid, "finished", final_diff=diff)
    if applied:
        store.update_meta(eid, applied=True)
    if outcome:
        store.set_outcome(eid, outcome)
    return eid, diff


def episode(store, eid) -> dict:
    row = store.conn.execute("SELECT * FROM episodes WHERE id = ?", (eid,)).fetchone()
    ep = dict(row)
    ep["meta"] = json.loads(ep["meta"])
    return ep


def events(store, eid, kind=None) -> list[dict]:
    sql = "SELECT * FROM outcome_events WHERE episode_id = ?" + (" AND kind = ?" if kind else "") + " ORDER BY id"
    return [dict(r) for r in store.conn.execute(sql, (eid, kind) if kind else (eid,))]


def venv_path_env() -> dict:
    """PATH with this interpreter's bin folder first, so the `learnagent` console script is found."""
    return {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


def old(days: float) -> float:
    return time.time() - days * 86400
