"""The git-hook entry: settle what became of the agent's proposed edits from new commits.

    hook entry (python -m learnagent.services.settle_outcomes <hook> [args]) -> settle_outcomes -> store

`learnagent hooks install` (core/githooks.py) writes hooks that run this module; hooks installed by
earlier versions run `python -m learnagent.core.githooks`, which hands over to `main` here. Both
must never fail the user's git command: `main` imports no typer/rich/torch, catches everything,
logs it to `data_home()/hooks.log` and returns 0.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from learnagent.core import home
from learnagent.core.repository import find_repository

USAGE = "usage: python -m learnagent.services.settle_outcomes post-commit|post-merge|post-rewrite [args]"


def settle_outcomes(name: str, args: list[str], stdin_text: str = "", cwd: Path | None = None) -> list[str]:
    """What hook `name` does in the repository at `cwd`: expire overdue proposals, then credit the
    new commit(s); returns the one-line notes to print."""
    from learnagent.store import gitutil
    from learnagent.store.outcomes import (expire_stale, load_settings, process_commit, process_merge,
                                           process_rewrite)

    repo = find_repository(cwd)  # the checkout the commit was made in; it may be a linked worktree
    top = repo.work_tree
    if gitutil.current_branch(top).startswith("learnagent/"):
        return []  # the agent's own commit in its worktree: the episode is not decided there
    from learnagent.store.db import store_exists
    from learnagent.store.episodes import Store

    if not store_exists():  # a team's PostgreSQL store is there by configuration, an SQLite one once made
        return []  # learnagent never ran for anything: nothing to attribute to

    with Store() as store:
        if not store.has_repo(repo.key):
            return []  # learnagent never ran in this repository
        settings = load_settings(repo.main_tree)
        msgs = expire_stale(store, top, settings, repo_id=repo.key)
        if name == "post-commit":
            head = gitutil.rev(top, "HEAD")
            msgs += process_commit(store, top, head, settings, repo_id=repo.key) if head else []
        elif name == "post-merge":
            msgs += process_merge(store, top, settings, repo_id=repo.key)
        elif name == "post-rewrite":
            pairs = [tuple(line.split()[:2]) for line in stdin_text.splitlines() if len(line.split()) >= 2]
            msgs += process_rewrite(store, top, pairs, settings, repo_id=repo.key)
        return msgs


def log_failure(name: str, exc: BaseException) -> None:
    """Append the failure to data_home()/hooks.log; never raises (the home may be unwritable)."""
    try:
        path = home.data_home() / "hooks.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name} in {os.getcwd()}: {exc!r}\n")
            fh.write("".join(traceback.format_exception(exc)) + "\n")
    except BaseException:
        pass


def run(name: str, args: list[str], stdin_text: str = "") -> int:
    """Do the hook's work; whatever happens, return 0 so the commit is never affected."""
    try:
        for line in settle_outcomes(name, args, stdin_text):
            print(line)
    except BaseException as exc:  # noqa: BLE001 - a hook must never fail the user's git command
        log_failure(name, exc)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(USAGE)
        return 0
    name = argv[0]
    stdin_text = ""
    if name == "post-rewrite":
        try:
            stdin_text = sys.stdin.read()
        except (OSError, ValueError):
            stdin_text = ""
    return run(name, argv[1:], stdin_text)


if __name__ == "__main__":
    sys.exit(main())
