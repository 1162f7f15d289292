"""Git plumbing for an episode: find the repository, make the episode's worktree, diff, apply, clean up.

The user's working tree and index are never touched here except by `apply_to_user_tree`,
which runs only on an explicit accept and refuses (writing nothing) when the merge conflicts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from learnagent.core import home
from learnagent.core.errors import LearnagentError, NotAGitRepo, RepoNotReady

BRANCH_PREFIX = "learnagent/"

# Build and test by-products that commands leave in the worktree. They are never part of the
# agent's change, even in a repository whose .gitignore does not list them.
ARTIFACTS = ["__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.egg-info", ".coverage",
             "node_modules", ".tox", ".nox", ".venv"]
_ARTIFACT_PATHSPECS = [f":(exclude,glob)**/{name}" for name in ARTIFACTS] + \
                      [f":(exclude,glob)**/{name}/**" for name in ARTIFACTS]


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    if check and proc.returncode != 0:
        raise LearnagentError(f"git {args[0]} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return proc.stdout


@dataclass
class RepoInfo:
    root: Path
    head: str
    branch: str


def find_repo(start: Path | None = None, *, need_branch: bool = True) -> RepoInfo:
    """The repository containing `start`, with checks that give one-line errors."""
    import git as gitpython  # gitpython; imported here to keep `--help` fast

    start = Path(start or Path.cwd())
    try:
        repo = gitpython.Repo(start, search_parent_directories=True)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        raise NotAGitRepo(f"not a git repository: {start} (run learnagent inside a git repository)") from None
    if repo.bare:
        raise NotAGitRepo(f"{start} is a bare repository; learnagent needs a working tree")
    root = Path(repo.working_tree_dir)
    if not repo.head.is_valid():
        raise RepoNotReady("the repository has no commits yet; make a first commit so the agent has a base")
    if repo.head.is_detached and need_branch:
        raise RepoNotReady("HEAD is detached; check out a branch first (learnagent applies its work onto a branch)")
    branch = "" if repo.head.is_detached else repo.active_branch.name
    return RepoInfo(root=root, head=repo.head.commit.hexsha, branch=branch)


def create_worktree(repo_root: Path, episode_id: str, base: str) -> tuple[Path, str]:
    """A new worktree on branch learnagent/<id> at `base`, outside the user's working tree."""
    branch = BRANCH_PREFIX + episode_id
    path = home.worktrees_dir(repo_root) / episode_id
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo_root, "worktree", "add", "--quiet", "-b", branch, str(path), base)
    return path, branch


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit everything the agent changed on its branch; returns the commit or None if nothing changed."""
    git(worktree, "add", "-A", "--", ".", *_ARTIFACT_PATHSPECS)
    if not git(worktree, "diff", "--cached", "--name-only").strip():
        return None
    git(worktree, "-c", "user.name=learnagent", "-c", "user.email=learnagent@localhost",
        "commit", "--quiet", "--no-verify", "-m", message)
    return git(worktree, "rev-parse", "HEAD").strip()


def remove_worktree(repo_root: Path, worktree: Path, branch: str | None, *, delete_branch: bool) -> None:
    if worktree and Path(worktree).exists():
        git(repo_root, "worktree", "remove", "--force", str(worktree), check=False)
    git(repo_root, "worktree", "prune", check=False)
    if delete_branch and branch:
        git(repo_root, "branch", "-D", branch, check=False)


# ---- accept: 3-way merge of the agent's files into the user's working tree ---------------

class MergeConflict(LearnagentError):
    pass


def _show(repo_root: Path, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo_root, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def changed_paths(repo_root: Path, base: str, tip: str) -> list[tuple[str, str]]:
    """(status letter, path) of every file the agent's branch changed; renames split into D + A."""
    out = git(repo_root, "diff", "--name-status", "--no-renames", "-z", base, tip)
    parts = [p for p in out.split("\0") if p]
    return [(parts[i][0], parts[i + 1]) for i in range(0, len(parts), 2)]


def apply_to_user_tree(repo_root: Path, base: str, tip: str) -> list[str]:
    """Merge base→tip into the user's working tree (not the index), file by file.

    For each file: ours = the user's current file (with their uncommitted edits), base = the
    episode's base commit, theirs = the agent's version. All merges are computed first; if any
    conflicts, nothing is written and MergeConflict names the files.
    """
    planned: dict[str, bytes | None] = {}
    conflicts: list[str] = []
    for status, rel in changed_paths(repo_root, base, tip):
        target = repo_root / rel
        ours = target.read_bytes() if target.is_file() else None
        old = _show(repo_root, base, rel)
        new = _show(repo_root, tip, rel)
        if ours == old:  # user has not touched it: take the agent's version
            planned[rel] = new
        elif ours == new:  # already identical
            continue
        elif old is None or new is None or ours is None or b"\0" in (old + new + ours):
            conflicts.append(rel)  # add/add, delete/modify or binary: no safe automatic merge
        else:
            merged, ok = _merge_file(ours, old, new)
            if ok:
                planned[rel] = merged
            else:
                conflicts.append(rel)
    if conflicts:
        raise MergeConflict("cannot apply: the agent's changes conflict with your uncommitted changes in "
                            + ", ".join(conflicts) + " (nothing was changed; the branch is kept)")
    for rel, content in planned.items():
        target = repo_root / rel
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.learnagent-tmp")
        tmp.write_bytes(content)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode)
        os.replace(tmp, target)
    return sorted(planned)


def _merge_file(ours: bytes, base: bytes, theirs: bytes) -> tuple[bytes, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_bytes(data)
            paths.append(str(p))
        proc = subprocess.run(["git", "merge-file", "-p", *paths], capture_output=True)
        return proc.stdout, proc.returncode == 0


def exclude_learnagent_files(repo_root: Path) -> bool:
    """List .learnagent/ in .git/info/exclude so our files never show in `git status`."""
    common = Path(git(repo_root, "rev-parse", "--git-common-dir").strip())
    if not common.is_absolute():
        common = repo_root / common
    exclude = common / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.learnagent/" in lines:
        return False
    with exclude.open("a") as fh:
        if lines and lines[-1] != "":
            fh.write("\n")
        fh.write("# learnagent's own files\n/.learnagent/\n")
    return True
