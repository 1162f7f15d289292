"""Small, fast git plumbing for the outcome hooks and history import.

Plain `subprocess` rather than GitPython: a post-commit hook runs on every commit and must
stay quick. Every call disables the user's diff drivers and colours so that the text we parse
is git's own unified format whatever their configuration says.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from learnagent.core.errors import LearnagentError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # `git hash-object -t tree /dev/null`
DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv")


def git(cwd: Path, *args: str, check: bool = True, input: str | bytes | None = None) -> str:
    if isinstance(input, str):
        input = input.encode()
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    proc = subprocess.run(["git", "-c", "core.quotePath=false", *args], cwd=cwd, capture_output=True,
                          input=input, env=env)
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LearnagentError(f"git {args[0]} failed: {err[-1] if err else proc.returncode}")
    return proc.stdout.decode("utf-8", "replace")


def git_ok(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0


def current_branch(cwd: Path) -> str:
    return git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()


def rev(cwd: Path, name: str) -> str | None:
    out = git(cwd, "rev-parse", "--verify", "--quiet", name + "^{commit}", check=False).strip()
    return out or None


def commit_info(cwd: Path, sha: str) -> dict:
    """Parents, committer/author time, author and full message of one commit."""
    out = git(cwd, "show", "-s", "--format=%H%x00%P%x00%ct%x00%at%x00%an%x00%ae%x00%B", sha)
    full, parents, ct, at, author, email, message = out.split("\0", 6)
    return {"sha": full.strip(), "parents": parents.split(), "committed_at": float(ct), "authored_at": float(at),
            "author": author, "author_email": email, "message": message.strip()}


def commit_diff(cwd: Path, sha: str, parent: str | None, context: int = 0) -> str:
    """The commit's diff against `parent` (its first parent for merges; the empty tree for a root)."""
    return git(cwd, "diff", f"-U{context}", "-M", *DIFF_FLAGS, parent or EMPTY_TREE, sha)


def show_file(cwd: Path, rev_: str, path: str) -> str | None:
    proc = subprocess.run(["git", "cat-file", "-p", f"{rev_}:{path}"], cwd=cwd, capture_output=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def is_ancestor(cwd: Path, a: str, b: str) -> bool:
    return git_ok(cwd, "merge-base", "--is-ancestor", a, b)
