"""Accept: merge an episode's base→tip change into the user's working tree (not the index), file by file.

For each path: ours = what the user's working tree holds now (uncommitted edits included; a
symlink counts as the link itself, never as what it points to), base = the episode's base commit,
theirs = the agent's version. Everything is checked and merged first; only when nothing conflicts
and nothing is refused are files written, so a refusal or conflict changes nothing.

Refused (ApplyRefused, a MergeConflict: the branch is kept, exit code 4):
- a path whose folder in the user's tree is a symbolic link (an ignored, untracked `data -> /elsewhere`
  would otherwise make accept write outside the repository) or a file;
- a path `.learnagentignore` hides, and a submodule (gitlink) change.
Written, and said (`on_note`): a path the user's own gitignore rules ignore (`git status` will
not show it).
Writes never follow a symlink: new content goes to a temporary file created with O_EXCL|O_NOFOLLOW
next to the target, then `os.replace` (which replaces a symlink itself, not its target).
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from learnagent.core import git as G
from learnagent.core.errors import LearnagentError
from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository

GITLINK, LINK, EXEC, MISSING = "160000", "120000", "100755", "000000"

# (kind, content): kind is "file", "exec" or "link"; None when the path holds nothing
Version = tuple[str, bytes] | None


class MergeConflict(LearnagentError):
    pass


class ApplyRefused(MergeConflict):
    """Applying would write through a symlink, outside the repository, or into a hidden path."""


def _raw_changes(repo: Path, base: str, tip: str) -> list[tuple[str, str, str, str, str]]:
    """(path, old mode, old id, new mode, new id) of every path base→tip changes (no renames)."""
    out = G.run(repo, "diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", base, tip)
    fields = out.split(b"\0")
    changes = []
    i = 0
    while i < len(fields) - 1:
        header = fields[i].decode()
        if not header.startswith(":"):
            i += 1
            continue
        old_mode, new_mode, old_id, new_id, _status = header[1:].split()
        changes.append((os.fsdecode(fields[i + 1]), old_mode, old_id, new_mode, new_id))
        i += 2
    return changes


def _blob(repo: Path, mode: str, oid: str) -> Version:
    if mode == MISSING:
        return None
    kind = "link" if mode == LINK else ("exec" if mode == EXEC else "file")
    return kind, G.run(repo, "cat-file", "blob", oid)


def _folder_problem(root: Path, rel: str) -> str | None:
    """Why the folders leading to `rel` cannot be written safely, or None."""
    current = root
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None  # created by us, below here nothing can be a symlink yet
        shown = "/".join(parts[: i + 1])
        if stat.S_ISLNK(st.st_mode):
            return f"{shown} is a symbolic link in your working tree (to {os.readlink(current)})"
        if not stat.S_ISDIR(st.st_mode):
            return f"{shown} is a file in your working tree, not a folder"
    return None


def _current(target: Path) -> Version | str:
    """What the user's tree holds at `target`: a Version, or "dir"/"special" for what we never replace."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link", os.fsencode(os.readlink(target))
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not stat.S_ISREG(st.st_mode):
        return "special"
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as fh:
        return ("exec" if st.st_mode & stat.S_IXUSR else "file"), fh.read()


def _same(a: Version | str, b: Version) -> bool:
    """Equal content and kind (a mode change alone, file vs exec, is not a difference of content)."""
    if a is None or b is None or isinstance(a, str):
        return a is None and b is None
    return (a[0] == "link") == (b[0] == "link") and a[1] == b[1]


def apply_to_user_tree(repo: Repository, base: str, tip: str, *, ignore: IgnoreRules | None = None,
                       on_note: Callable[[str], None] | None = None) -> list[str]:
    """Merge base→tip into the user's working tree (`repo.work_tree`, of the Repository the CLI
    resolved); the paths written (MergeConflict changes nothing). `ignore`: default the repository's rules."""
    root = repo.work_tree
    ignore = ignore if ignore is not None else IgnoreRules.for_repository(repo)
    changes = _raw_changes(root, base, tip)
    refused = []
    for rel, old_mode, _, new_mode, _ in changes:
        if GITLINK in (old_mode, new_mode):
            refused.append(f"{rel} is a submodule (learnagent does not apply submodule changes)")
        elif ignore.is_ignored(rel):
            refused.append(f"{rel} is hidden by .learnagentignore")
        elif (problem := _folder_problem(root, rel)) is not None:
            refused.append(problem)
    if refused:
        raise ApplyRefused("cannot apply: " + "; ".join(refused) + " (nothing was changed; the branch is kept)")

    planned: dict[str, tuple[Version, bool]] = {}  # path -> (new version, take the agent's mode)
    conflicts: list[str] = []
    for rel, old_mode, old_id, new_mode, new_id in changes:
        ours = _current(root / rel)
        old, new = _blob(root, old_mode, old_id), _blob(root, new_mode, new_id)
        if ours in ("dir", "special"):
            conflicts.append(rel)
        elif _same(ours, old):  # the user has not touched it: take the agent's version
            planned[rel] = (new, old_mode != new_mode or ours is None)
        elif _same(ours, new):  # already identical
            continue
        elif ours is None or old is None or new is None or "link" in (ours[0], old[0], new[0]) \
                or b"\0" in old[1] + new[1] + ours[1]:
            conflicts.append(rel)  # add/add, delete/modify, symlinks or binary: no safe automatic merge
        else:
            merged, ok = _merge_file(ours[1], old[1], new[1])
            if ok:
                planned[rel] = ((ours[0], merged), False)
            else:
                conflicts.append(rel)
    if conflicts:
        raise MergeConflict("cannot apply: the agent's changes conflict with your uncommitted changes in "
                            + ", ".join(conflicts) + " (nothing was changed; the branch is kept)")
    for rel, (version, take_mode) in planned.items():
        _write(root, rel, version, take_mode)
    if on_note is not None:
        written = [rel for rel, (version, _) in planned.items() if version is not None]
        for rel in _git_ignored(root, written):
            on_note(f"{rel} is ignored by git in your repository (.gitignore): `git status` will not show it")
    return sorted(planned)


def _write(root: Path, rel: str, version: Version, take_mode: bool) -> None:
    target = root / rel
    problem = _folder_problem(root, rel)  # checked again right before writing
    if problem is not None:
        raise ApplyRefused(f"cannot apply {rel}: {problem}")
    if version is None:
        if os.path.lexists(target):
            target.unlink()  # a symlink itself, never its target
        return
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        if not os.path.lexists(current):
            os.mkdir(current)
    kind, data = version
    tmp = target.with_name(f".{target.name}.learnagent-tmp")
    if os.path.lexists(tmp):
        tmp.unlink()
    if kind == "link":
        os.symlink(data, tmp)
    else:
        try:
            st = os.lstat(target)
            old_mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
        except FileNotFoundError:
            old_mode = None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        mode = old_mode if old_mode is not None else 0o666 & ~_umask()
        if take_mode:  # git's rule: executable where readable, or no x bit at all
            mode = mode | (mode >> 2) & 0o111 if kind == "exec" else mode & ~0o111
        os.chmod(tmp, mode)
    os.replace(tmp, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _git_ignored(root: Path, paths: list[str]) -> list[str]:
    if not paths:
        return []
    out = G.run(root, "check-ignore", "-z", "--stdin", input=b"\0".join(os.fsencode(p) for p in paths) + b"\0",
                check=False)
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _merge_file(ours: bytes, base: bytes, theirs: bytes) -> tuple[bytes, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_bytes(data)
            paths.append(str(p))
        # outside any repository (cwd=tmp), hardened: merge-file reads no attributes and runs no driver
        proc = subprocess.run(G.argv("merge-file", "-p", *paths), cwd=tmp, capture_output=True,
                              env=G.hardened_env())
        return proc.stdout, proc.returncode == 0
