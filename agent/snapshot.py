"""Read what the agent left in its episode folder, without git and without following a symlink.

The folder is agent-controlled: its `.git` (config, hooks, index, HEAD), `.gitattributes` and any
nested repository were written by a model we do not trust. So the result is read here in Python:
a walk with `lstat` only, that skips the folder's own `.git` and never opens a path through a
symlink (files are opened with O_NOFOLLOW). It gives the final tree's entries, which
agent/worktree.py writes into the *user's* repository with hardened plumbing.

What the final tree holds (the same choices `git add -A` made in the old linked worktree):
- every file and symlink the walk finds, except untracked ones the repository's gitignore rules
  exclude (per-folder `.gitignore` files, the user's `info/exclude` and global excludes file)
  and build by-products (`ARTIFACTS`); symlinks are recorded as symlinks (mode 120000);
- entries of the base that the agent could not see or must not change, exactly as in the base:
  files ignored by `.learnagentignore` (never checked out), gitlinks (submodules), ARTIFACTS.

Refused with `UnsafeChange` (one line, exit code 5; nothing is recorded or applied):
- a file the walk would record at a path `.learnagentignore` hides (an agent that writes `.env`,
  appends to an ignored file, or replaces a folder holding ignored files);
- a nested repository (`.git` below the top, any letter case) or files inside a submodule;
- a FIFO, socket or device file; a symlinked `.gitmodules`/`.gitattributes`/`.gitignore`/`.mailmap`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core import git as G
from learnagent.core.errors import LearnagentError
from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository

# Build and test by-products that commands leave in the folder. They are never part of the
# agent's change, even in a repository whose .gitignore does not list them; tracked files
# under them keep their base version.
ARTIFACTS = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.egg-info", ".coverage",
             "node_modules", ".tox", ".nox", ".venv")
# git itself refuses these as symlinks (fsck: gitmodulesSymlink & co.): they steer git's behaviour.
NO_SYMLINK = (".gitmodules", ".gitattributes", ".gitignore", ".mailmap")
MAX_IGNORE_FILE = 256 * 1024  # a larger .gitignore is not read (its patterns become regexes)
CHUNK = 1 << 20

MODE_FILE, MODE_EXEC, MODE_LINK, MODE_GITLINK = "100644", "100755", "120000", "160000"


class UnsafeChange(LearnagentError):
    """The agent's change cannot be recorded safely; the message names the path and the rule."""

    exit_code = 5


_ARTIFACT_NAME = re.compile("|".join(fnmatch.translate(pattern) for pattern in ARTIFACTS))


def is_artifact(path: str) -> bool:
    """A build by-product, or inside one (any component of the path matches ARTIFACTS)."""
    return any(_ARTIFACT_NAME.match(part) for part in path.split("/"))


def _read_small(path: Path) -> list[str]:
    """Lines of a regular file (not through a symlink), or [] when it is anything else or too big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IGNORE_FILE:
            return []
        return fh.read().decode("utf-8", "replace").splitlines()


class GitExcludes:
    """git's ignore rules for untracked files: per-folder `.gitignore`, `info/exclude`, global file.

    Precedence as in gitignore(5): a deeper `.gitignore` beats a shallower one, any `.gitignore`
    beats `info/exclude`, which beats the global excludes file; within one source the last
    matching pattern wins; a path inside an excluded folder stays excluded (the walk prunes it).
    """

    def __init__(self, outer_sources: list[list[str]]):
        from pathspec import GitIgnoreSpec

        self._spec = GitIgnoreSpec.from_lines
        # highest precedence first: info/exclude, then the global file
        self.outer = [self._spec(lines) for lines in outer_sources if lines]
        self.levels: dict[str, object] = {}  # folder ("" = top) -> spec of its .gitignore

    @classmethod
    def for_repository(cls, repo: Repository) -> "GitExcludes":
        """The user's `info/exclude` (in the shared git dir the Repository names) and global excludes
        file: the repository's, never the agent's."""
        sources = [_read_small(repo.common_dir / "info" / "exclude")]
        global_file = _global_excludes_file(repo.work_tree)
        if global_file is not None:
            sources.append(_read_small(global_file))
        return cls(sources)

    def load_folder(self, folder_rel: str, folder_abs: Path) -> None:
        lines = _read_small(folder_abs / ".gitignore")
        if lines:
            self.levels[folder_rel] = self._spec(lines)

    def excluded(self, rel: str, is_dir: bool) -> bool:
        parts = rel.split("/")
        for depth in range(len(parts) - 1, -1, -1):  # the deepest .gitignore first
            folder = "/".join(parts[:depth])
            spec = self.levels.get(folder)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            verdict = spec.check_file(sub).include
            if verdict is not None:
                return bool(verdict)
        for spec in self.outer:
            verdict = spec.check_file(rel + ("/" if is_dir else "")).include
            if verdict is not None:
                return bool(verdict)
        return False


def _global_excludes_file(repo_root: Path) -> Path | None:
    """`core.excludesFile` from the user's config (read with `git config`, which runs nothing), or
    git's default `$XDG_CONFIG_HOME/git/ignore`."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_CONFIG_")}
    try:
        proc = subprocess.run(["git", "config", "--path", "--get", "core.excludesFile"], cwd=repo_root,
                              capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=30)
        value = proc.stdout.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        value = ""
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "git" / "ignore"


@dataclass
class Snapshot:
    entries: dict[str, tuple[str, str]]  # the final tree: path -> (mode, object id)
    # blobs the user's repository may not hold yet: object id -> ("file", absolute path) | ("link", target)
    new_blobs: dict[str, tuple[str, object]] = field(default_factory=dict)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "a special file"


def hash_file(path: Path, fmt: str) -> tuple[str, bool]:
    """(blob id, executable) of a regular file, opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeChange(f"{path} changed type while it was read; nothing was recorded")
        h = G.blob_hasher(fmt, st.st_size)
        read = 0
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            read += len(chunk)
        if read != st.st_size:
            raise UnsafeChange(f"{path} changed size while it was read; nothing was recorded")
        return h.hexdigest(), bool(st.st_mode & stat.S_IXUSR)


class _Walker:
    def __init__(self, top: Path, base: dict[str, tuple[str, str]], ignore: IgnoreRules,
                 excludes: GitExcludes, fmt: str, hidden: set[str]):
        self.top, self.base, self.ignore, self.excludes, self.fmt = top, base, ignore, excludes, fmt
        self.hidden = hidden  # base paths .learnagentignore hides
        self.base_dirs = {"/".join(p.split("/")[:i]) for p in base for i in range(1, p.count("/") + 1)}
        self.gitlinks = {p for p, (mode, _) in base.items() if mode == MODE_GITLINK}
        self.found: dict[str, tuple[str, str]] = {}
        self.new_blobs: dict[str, tuple[str, object]] = {}
        self.known_ids = {oid for _, oid in base.values()}

    def walk(self, rel_dir: str, abs_dir: Path, tracked_only: bool) -> None:
        if not tracked_only:
            self.excludes.load_folder(rel_dir, abs_dir)
        try:
            with os.scandir(abs_dir) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:  # e.g. a folder the agent made unreadable: its content would be missed
            raise UnsafeChange(f"cannot read the folder {rel_dir or '.'} of the agent's change ({exc.strerror}); "
                               "nothing was recorded") from None
        for child in children:
            name = child.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel == ".git":
                continue  # the agent's own repository: its business, never read
            if name.lower() == ".git":
                where = rel_dir or "the top folder"
                raise UnsafeChange(f"the agent's change holds a nested git repository or gitlink ({rel}, in "
                                   f"{where}); learnagent does not record submodules or nested repositories")
            if _ARTIFACT_NAME.match(name):
                continue
            st = os.lstat(child.path)
            if stat.S_ISDIR(st.st_mode):
                self._folder(rel, Path(child.path), tracked_only)
            else:
                self._file(rel, Path(child.path), st, tracked_only)

    def _folder(self, rel: str, path: Path, tracked_only: bool) -> None:
        if rel in self.gitlinks:
            with os.scandir(path) as it:
                holds_files = any(True for _ in it)
            if holds_files:
                raise UnsafeChange(f"the agent changed files inside submodule {rel}; learnagent does not record "
                                   "changes to submodules")
            return
        excluded = not tracked_only and self.excludes.excluded(rel, is_dir=True)
        if excluded and rel not in self.base_dirs:
            return  # an ignored folder with nothing tracked in it
        self.walk(rel, path, tracked_only or excluded)

    def _file(self, rel: str, path: Path, st: os.stat_result, tracked_only: bool) -> None:
        tracked = rel in self.base and self.base[rel][0] != MODE_GITLINK
        if not tracked and (tracked_only or self.excludes.excluded(rel, is_dir=False)):
            return
        if (rel in self.hidden) if tracked else self.ignore.matches(rel):
            raise UnsafeChange(f"the agent's change touches {rel}, which .learnagentignore hides (secrets stay out "
                               "of episodes); nothing was recorded or applied")
        if rel in self.gitlinks:
            raise UnsafeChange(f"the agent replaced submodule {rel} with a file; learnagent does not record "
                               "changes to submodules")
        if stat.S_ISLNK(st.st_mode):
            if rel.split("/")[-1] in NO_SYMLINK:
                raise UnsafeChange(f"the agent made {rel} a symbolic link, which git refuses for that file; "
                                   "nothing was recorded")
            target = os.readlink(os.fsencode(path))
            oid = G.blob_id(target, self.fmt)
            self.found[rel] = (MODE_LINK, oid)
            if oid not in self.known_ids:
                self.new_blobs[oid] = ("link", target)
        elif stat.S_ISREG(st.st_mode):
            try:
                oid, executable = hash_file(path, self.fmt)
            except OSError as exc:
                raise UnsafeChange(f"cannot read {rel} of the agent's change ({exc.strerror}); nothing was "
                                   "recorded") from None
            self.found[rel] = (MODE_EXEC if executable else MODE_FILE, oid)
            if oid not in self.known_ids:
                self.new_blobs[oid] = ("file", path)
        else:
            raise UnsafeChange(f"the agent's change holds {rel}, {_kind(st.st_mode)}; git cannot record it "
                               "and learnagent does not read it")


def read_folder(top: Path, base: dict[str, tuple[str, str]], ignore: IgnoreRules, excludes: GitExcludes,
                fmt: str = "sha1", hidden: set[str] | None = None) -> Snapshot:
    """The final tree of the episode folder `top` over the base tree `base` ({path: (mode, id)});
    `hidden`: `hidden_paths(base, ignore)` when the caller has it already."""
    hidden = hidden_paths(base, ignore) if hidden is None else hidden
    walker = _Walker(Path(top), base, ignore, excludes, fmt, hidden)
    walker.walk("", Path(top), tracked_only=False)
    entries: dict[str, tuple[str, str]] = {}
    for path, entry in base.items():  # what the agent could not see or may not change stays as it was
        if entry[0] == MODE_GITLINK or path in hidden or is_artifact(path):
            entries[path] = entry
    entries.update(walker.found)
    _refuse_folder_file_clashes(entries, hidden)
    return Snapshot(entries, walker.new_blobs)


def hidden_paths(base: dict[str, tuple[str, str]], ignore: IgnoreRules) -> set[str]:
    """The base's files `.learnagentignore` hides (submodules are never hidden: they hold no content)."""
    return {p for p, (mode, _) in base.items() if mode != MODE_GITLINK and ignore.matches(p)}


def _refuse_folder_file_clashes(entries: dict[str, tuple[str, str]], hidden: set[str]) -> None:
    """A kept entry (ignored file, submodule) under a path the agent turned into a file or symlink."""
    for path in entries:
        if "/" not in path:
            continue
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in entries:
                why = "files .learnagentignore hides" if path in hidden else "files it cannot change"
                raise UnsafeChange(f"the agent replaced folder {parent}, which holds {why} ({path}), with a file "
                                   "or symlink; nothing was recorded or applied")


def write_blobs(repo: Path, snap: Snapshot, scratch: Path) -> None:
    """Store the snapshot's new blobs in the user's repository: `hash-object -w --no-filters`
    (no clean filter, no eol conversion) on private copies, so git never opens an agent path."""
    if not snap.new_blobs:
        return
    names, expected = [], []
    for i, (oid, (kind, source)) in enumerate(sorted(snap.new_blobs.items())):
        copy = scratch / f"blob-{i}"
        if kind == "link":
            copy.write_bytes(source)  # type: ignore[arg-type]
        else:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)  # type: ignore[arg-type]
            with os.fdopen(fd, "rb") as src, open(copy, "wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
        names.append(str(copy))
        expected.append(oid)
    out = G.text(repo, "hash-object", "-w", "--no-filters", "--stdin-paths", input="\n".join(names).encode() + b"\n")
    if out.split() != expected:
        raise UnsafeChange("a file of the agent's change was modified while learnagent stored it; nothing was recorded")
