"""Which repository a command works on: one `Repository` value, resolved once at the CLI edge
(or the git-hook entry) and passed down. Nothing below it asks git or walks `.git` again.

    repo = find_repository(Path.cwd())     # the edge: git's own discovery, one-line errors
    repo = Repository.at(work_tree)        # a known top level (a test, a stored path): git's files only
    repo.work_tree   the checkout the command runs in (a linked worktree is its own)
    repo.main_tree   the repository's main working tree (== work_tree unless linked)
    repo.git_dir     work_tree's git dir (`.git`, or `.git/worktrees/<name>` of a linked worktree)
    repo.common_dir  the shared `.git` (== git_dir for a main tree)
    repo.key         12 hex of sha1(main_tree): keys episodes, outcomes, adapters, episode folders
    repo.name        the main tree's folder name
    repo.worktrees_dir, repo.adapters_dir   its folders in the data home

Every worktree of one repository (the user's `git worktree add` ones, older learnagent's linked
episode folders) shares the main tree's key, so its episodes, outcomes and adapters are one set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from learnagent.core.errors import NotAGitRepo
from learnagent.core.gitdirs import git_dirs


def key_of(main_tree: Path) -> str:
    """The repository key: from the real path of its main working tree (stable across runs)."""
    return hashlib.sha1(str(main_tree).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Repository:
    work_tree: Path
    main_tree: Path
    git_dir: Path
    common_dir: Path
    key: str
    name: str

    @classmethod
    def at(cls, work_tree: Path | str) -> "Repository":
        """The repository checked out at `work_tree` (its top level), from the files git writes."""
        work_tree = Path(work_tree).resolve()
        dirs = git_dirs(work_tree)
        if dirs is None:
            raise NotAGitRepo(f"not a git repository: {work_tree} (run learnagent inside a git repository)")
        git_dir, common_dir = dirs
        linked = git_dir != common_dir and common_dir.name == ".git"
        main_tree = common_dir.parent if linked else work_tree
        return cls(work_tree=work_tree, main_tree=main_tree, git_dir=git_dir, common_dir=common_dir,
                   key=key_of(main_tree), name=main_tree.name)

    @property
    def linked(self) -> bool:
        """A linked worktree (`git worktree add`) of another main tree."""
        return self.work_tree != self.main_tree

    @property
    def worktrees_dir(self) -> Path:
        """Where its episode folders live (`<data home>/worktrees/<key>`)."""
        from learnagent.core.home import data_home

        return data_home() / "worktrees" / self.key

    @property
    def adapters_dir(self) -> Path:
        """Where its adapters live (`<data home>/adapters/<key>`)."""
        from learnagent.core.home import data_home

        return data_home() / "adapters" / self.key


def segment_of(key: str) -> str:
    """A repository key as one safe name segment, for its adapter folder and its served model names
    (`runtime.export.served_name`): the key itself when it already is one (a local store's 12-hex
    key: the folder its checkout uses), else the key made safe (a team name such as
    `github.com/acme/api` holds slashes, which split paths and litellm's `provider/model` names)
    + 6 hex of its hash, so two keys never share one: `github.com_acme_api-3bc8cf`. Stable: a
    function of the key alone."""
    import re

    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", key):
        return key
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "repo"
    return f"{safe[:60]}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class StoredRepository:
    """A repository known only from a (team) store, with no checkout on this machine
    (`learnagent sleep --store URL --repo NAME`): `key` is its id there (for a pushed repository,
    its team name, e.g. `github.com/acme/api`), which keys its episodes and adapter rows."""

    key: str
    name: str
    work_tree = None  # no checkout
    main_tree = None

    @property
    def folder_name(self) -> str:
        """Its folder name in the data home (`segment_of(key)`)."""
        return segment_of(self.key)

    @property
    def adapters_dir(self) -> Path:
        """Where its adapters live (`<data home>/adapters/<folder_name>`)."""
        from learnagent.core.home import data_home

        return data_home() / "adapters" / self.folder_name


def find_repository(start: Path | str | None = None) -> Repository:
    """The repository whose working tree contains `start` (default: the current folder), found the
    way git finds it; a bare repository or none gives a one-line error (exit 2)."""
    import subprocess

    start = Path(start or Path.cwd())
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.run(["git", "rev-parse", "--is-bare-repository", "--show-toplevel"], cwd=start,
                              capture_output=True, text=True, env=env)
    except (FileNotFoundError, NotADirectoryError):
        raise NotAGitRepo(f"not a git repository: {start} (run learnagent inside a git repository)") from None
    lines = proc.stdout.splitlines()
    if lines and lines[0] == "true":
        raise NotAGitRepo(f"{start} is a bare repository; learnagent needs a working tree")
    if proc.returncode != 0 or len(lines) < 2 or not lines[1].strip():
        raise NotAGitRepo(f"not a git repository: {start} (run learnagent inside a git repository)")
    return Repository.at(lines[1])
