"""An episode's folder and branch: make the checkout, record the agent's result, clean up.

The episode folder (`repo.worktrees_dir/<id>`, of the `Repository` the CLI resolved) is a standalone checkout with its OWN
repository in `<folder>/.git`: a private object store holding only the base tree's blobs, and
one commit, the base minus the files `.learnagentignore` hides. The agent may run any git command
in it inside the sandbox; nothing it does there reaches the user's repository, which the sandbox
cannot see at all (sandbox/bwrap.py). Why not a linked worktree (the first design) or alternates
to the user's objects: a linked worktree shares the user's objects, refs and config with the
sandbox (writable objects let an agent rewrite history; its HEAD decided where our commit went),
and alternates would let `git cat-file` read every ignored file ever committed.

learnagent alone writes the user's repository, with hardened plumbing (core/git.py) and never
with the episode folder as git dir or work tree once the agent has run:
- at the start, `refs/heads/learnagent/<id>` is created at the base (`update-ref` create-only);
- at the end, agent/snapshot.py reads the folder in Python (no symlink followed), the new blobs go
  in with `hash-object -w --no-filters`, the tree is built in a private index file, and the
  branch moves with `update-ref <ref> <commit> <base>`: only from where we put it. The ref name
  comes from the episode id, never from anything in the folder (an agent that rewrites its HEAD
  to `ref: refs/heads/main` changes nothing but its own repository).
- The user's working tree and index are never touched except by `apply_to_user_tree`
  (agent/accept.py), on an explicit accept.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from learnagent.agent import snapshot
from learnagent.agent.accept import ApplyRefused, MergeConflict, apply_to_user_tree  # noqa: F401 (re-exported)
from learnagent.core import git as G
from learnagent.core.errors import LearnagentError, RepoNotReady
from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository, find_repository

BRANCH_PREFIX = "learnagent/"
ARTIFACTS = list(snapshot.ARTIFACTS)
UnsafeChange = snapshot.UnsafeChange
IDENTITY = {"GIT_AUTHOR_NAME": "learnagent", "GIT_AUTHOR_EMAIL": "learnagent@localhost",
            "GIT_COMMITTER_NAME": "learnagent", "GIT_COMMITTER_EMAIL": "learnagent@localhost"}
# The episode's own repository checks files out byte for byte (no eol conversion, no ident,
# no filter: its config defines no driver and these attributes win over any .gitattributes),
# so an unchanged file hashes to its base blob and the walk in snapshot.py sees no change.
EPISODE_ATTRIBUTES = "* -text -filter -ident -working-tree-encoding !eol\n"
EPISODE_CONFIG = ("[core]\n\tautocrlf = false\n\tfsmonitor = false\n[gc]\n\tauto = 0\n"
                  "[user]\n\tname = learnagent agent\n\temail = agent@learnagent.invalid\n")
_EPISODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    """Hardened git (core/git.py) in `cwd`, text out; a failure is a one-line LearnagentError."""
    return G.text(cwd, *args, input=input.encode() if input is not None else None, check=check)


@dataclass(frozen=True)
class RepoInfo:
    """The repository a command works on (resolved once, at the CLI edge) and its checked-out HEAD."""
    repository: Repository
    head: str
    branch: str

    @property
    def root(self) -> Path:
        return self.repository.work_tree


def find_repo(start: Path | None = None, *, need_branch: bool = True) -> RepoInfo:
    """The repository containing `start` and its HEAD, with checks that give one-line errors."""
    import git as gitpython  # gitpython; imported here to keep `--help` fast

    repository = find_repository(start)
    repo = gitpython.Repo(repository.work_tree)
    if not repo.head.is_valid():
        raise RepoNotReady("the repository has no commits yet; make a first commit so the agent has a base")
    if repo.head.is_detached and need_branch:
        raise RepoNotReady("HEAD is detached; check out a branch first (learnagent applies its work onto a branch)")
    branch = "" if repo.head.is_detached else repo.active_branch.name
    return RepoInfo(repository=repository, head=repo.head.commit.hexsha, branch=branch)


def episode_branch(episode_id: str) -> str:
    """`learnagent/<id>`: the only branch an episode ever writes."""
    if not _EPISODE_ID.match(episode_id) or ".." in episode_id or episode_id.endswith((".", ".lock")):
        raise LearnagentError(f"'{episode_id}' is not a valid episode id")
    return BRANCH_PREFIX + episode_id


def _ref(branch: str) -> str:
    if not branch.startswith(BRANCH_PREFIX):
        raise LearnagentError(f"{branch} is not an episode branch (learnagent only writes {BRANCH_PREFIX}*)")
    episode_branch(branch[len(BRANCH_PREFIX):])
    return "refs/heads/" + branch


def user_repository_paths(repo: Repository) -> list[Path]:
    """The user's working tree(s) and git dirs: what the sandbox hides completely."""
    found = [repo.work_tree, repo.git_dir, repo.common_dir, repo.main_tree]
    unique = sorted(set(found), key=lambda p: (len(p.parts), str(p)))
    return [p for p in unique if not any(q != p and q in p.parents for q in unique)]


# ---- the episode's checkout ---------------------------------------------------------------

def create_worktree(repo: Repository, episode_id: str, base: str,
                    ignore: IgnoreRules | None = None) -> tuple[Path, str]:
    """The episode folder (own repository, base minus ignored files) and branch learnagent/<id> at `base`."""
    repo_root = repo.work_tree
    ignore = ignore if ignore is not None else IgnoreRules.for_repository(repo)
    branch = episode_branch(episode_id)
    base = git(repo_root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").strip()
    path = repo.worktrees_dir / episode_id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    created_ref = False
    try:
        git(repo_root, "update-ref", "-m", "learnagent: episode started", _ref(branch), base, _zero(repo_root))
        created_ref = True
        _make_checkout(repo_root, path, branch, base, ignore)
    except BaseException:
        remove_folder(path)
        if created_ref:
            git(repo_root, "update-ref", "-d", _ref(branch), base, check=False)
        raise
    return path, branch


def _zero(repo_root: Path) -> str:
    return "0" * (64 if G.object_format(repo_root) == "sha256" else 40)


def _make_checkout(repo_root: Path, path: Path, branch: str, base: str, ignore: IgnoreRules) -> None:
    # Everything here runs before the agent's first command: the folder is still learnagent's.
    fmt = G.object_format(repo_root)
    G.run(path, "init", "-q", "--template=", f"--object-format={fmt}", f"--initial-branch={branch}", ".")
    (path / ".git" / "info").mkdir(exist_ok=True)
    (path / ".git" / "info" / "attributes").write_text(EPISODE_ATTRIBUTES)
    with open(path / ".git" / "config", "a") as fh:
        fh.write(EPISODE_CONFIG)
    base_entries = G.ls_tree(repo_root, base)
    hidden = _hidden(base, base_entries, ignore)
    entries = {p: e for p, e in base_entries.items() if p not in hidden}
    blobs = sorted({oid for mode, oid in entries.values() if mode != snapshot.MODE_GITLINK})
    if blobs:  # copy the blobs as one pack: the user's object store stays out of the sandbox
        # --window=0: no new delta search (deltas already in the user's packs are reused); 5x faster
        G.pipe(repo_root, ["pack-objects", "--stdout", "-q", "--window=0"], path, ["index-pack", "--stdin"],
               input="\n".join(blobs).encode() + b"\n")
    G.run(path, "update-index", "-z", "--index-info", input=G.index_info(entries))
    tree = G.text(path, "write-tree").strip()
    message = f"learnagent: episode base {base[:12]}\n"
    if hidden:
        message += f"\n{len(hidden)} file(s) hidden by .learnagentignore are left out of this checkout.\n"
    commit = G.text(path, "commit-tree", "--no-gpg-sign", tree, input=message.encode(), env=IDENTITY).strip()
    G.run(path, "update-ref", "refs/heads/" + branch, commit)
    G.run(path, "checkout-index", "--all", "--force", "-u")


_HIDDEN: dict[tuple[str, tuple[str, ...]], set[str]] = {}


def _hidden(base: str, base_entries: dict[str, tuple[str, str]], ignore: IgnoreRules) -> set[str]:
    """snapshot.hidden_paths, once per (base, rules): an episode needs it at its start and its end."""
    key = (base, tuple(ignore.user_patterns))
    if key not in _HIDDEN:
        if len(_HIDDEN) > 8:
            _HIDDEN.clear()
        _HIDDEN[key] = snapshot.hidden_paths(base_entries, ignore)
    return _HIDDEN[key]


# ---- the agent's result -------------------------------------------------------------------

def commit_all(repo: Repository, worktree: Path, *, base: str, branch: str, message: str,
               ignore: IgnoreRules | None = None) -> str | None:
    """Record the folder's final state on the episode branch of `repo` (the user's repository, as the
    CLI resolved it); the commit, or None if nothing changed. `ignore`: the rules the episode started
    with (default: the repository's as they are now).

    Raises UnsafeChange (nothing written to any ref) when the change touches an ignored file, a
    submodule or nested repository, or holds a special file.
    """
    repo_root = repo.work_tree
    ignore = ignore if ignore is not None else IgnoreRules.for_repository(repo)
    ref = _ref(branch)
    base_entries = G.ls_tree(repo_root, base)
    snap = snapshot.read_folder(Path(worktree), base_entries, ignore, snapshot.GitExcludes.for_repository(repo),
                                G.object_format(repo_root), _hidden(base, base_entries, ignore))
    with tempfile.TemporaryDirectory(prefix="learnagent-commit-") as scratch:
        snapshot.write_blobs(repo_root, snap, Path(scratch))
        tree = G.write_tree(repo_root, snap.entries, Path(scratch))
    if tree == git(repo_root, "rev-parse", f"{base}^{{tree}}").strip():
        return None
    commit = G.text(repo_root, "commit-tree", "--no-gpg-sign", "-p", base, tree, input=message.encode(),
                    env=IDENTITY).strip()
    # moves only from the base, where create_worktree put it: anything else moved it, and we stop
    git(repo_root, "update-ref", "-m", "learnagent: episode result", ref, commit, base)
    return commit


def diff(repo_root: Path, base: str, tip: str) -> str:
    """The episode's diff, computed between two trees of the user's repository (no work tree)."""
    return git(repo_root, "diff", "--binary", *G.DIFF_FLAGS, base, tip)


def changed_paths(repo_root: Path, base: str, tip: str) -> list[tuple[str, str]]:
    """(status letter, path) of every file the agent's branch changed; renames split into D + A."""
    out = G.run(repo_root, "diff", "--name-status", "--no-renames", "-z", *G.DIFF_FLAGS, base, tip)
    parts = [os.fsdecode(p) for p in out.split(b"\0") if p]
    return [(parts[i][0], parts[i + 1]) for i in range(0, len(parts), 2)]


# ---- clean-up -----------------------------------------------------------------------------

def remove_folder(path: Path) -> None:
    """Delete an agent-written folder: never follows a symlink, also through folders it made read-only."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return

    def unlock_and_retry(func, failed, _exc):
        parent = os.path.dirname(failed)
        for folder in (parent, failed):
            try:
                if stat.S_ISDIR(os.lstat(folder).st_mode):
                    os.chmod(folder, 0o700)
            except OSError:
                pass
        try:
            func(failed)
        except FileNotFoundError:
            pass

    # A process the dead run left behind (a test command of a `do` killed with SIGKILL, outside the
    # sandbox, which kills its commands with it) may still write into the folder while it goes:
    # rmdir then finds new files (ENOTEMPTY, seen in tests/test_crash_safety.py under load). The walk
    # is repeated a few times; a folder still filled after that raises, for the caller to report.
    for attempt in range(5):
        try:
            shutil.rmtree(path, onerror=unlock_and_retry)  # fd-based on Linux: symlinks are unlinked, not followed
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def remove_agent_repository(worktree: Path) -> None:
    """Delete the agent's `.git` once its result is read: nobody should run git in it later."""
    remove_folder(Path(worktree) / ".git")


def remove_worktree(repo_root: Path, worktree: Path | None, branch: str | None, *, delete_branch: bool) -> None:
    """Remove the episode folder (and its branch when `delete_branch`); also handles the linked
    worktrees that earlier versions made."""
    if worktree:
        path = Path(worktree)
        dotgit = path / ".git"
        if os.path.lexists(dotgit) and stat.S_ISREG(os.lstat(dotgit).st_mode):
            # an old-style linked worktree: --force twice skips git's status check inside it
            git(repo_root, "worktree", "remove", "--force", "--force", str(path), check=False)
        remove_folder(path)
        git(repo_root, "worktree", "prune", check=False)
    if delete_branch and branch:
        delete_episode_branch(repo_root, branch)


def delete_episode_branch(repo_root: Path, branch: str) -> None:
    git(repo_root, "update-ref", "-d", _ref(branch), check=False)


def exclude_learnagent_files(repo: Repository) -> bool:
    """List .learnagent/ in the shared git dir's info/exclude so our files never show in `git status`."""
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.learnagent/" in lines:
        return False
    with exclude.open("a") as fh:
        if lines and lines[-1] != "":
            fh.write("\n")
        fh.write("# learnagent's own files\n/.learnagent/\n")
    return True
