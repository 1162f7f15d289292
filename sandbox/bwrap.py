"""The bubblewrap command line for one sandboxed command.

Layout inside the sandbox (later mounts cover earlier ones):
  /                      read-only bind of the host root
  /dev, /proc            minimal devices, a /proc for the new pid namespace
  /tmp                   the Sandbox's private tmp folder (read-write; HOME is /tmp/home)
  secrets                empty read-only tmpfs (folders) or /dev/null (files), see policy.py
  hidden folders         empty tmpfs, read-only at the end: the user's repository (working tree
                         and git dirs, `Sandbox(hide=...)`): its objects, refs, config, hooks,
                         untracked and ignored files (`.env`) are not there to read or write
  data_home()            empty tmpfs: the episode DB, adapters and other episodes' folders vanish
  interpreter roots      read-only again where a hidden folder covered them (a venv inside the
                         repository or under /tmp must stay usable for `python -m pytest`)
  <worktree>             read-write: the episode folder with its own `.git` (agent/worktree.py);
                         the agent may do anything there, learnagent never runs git on it later
Capabilities are dropped (`--cap-drop ALL`): run as root, bwrap otherwise keeps them all and
the command could simply remount / read-write.
Hidden folders are mounted tmpfs (writable while bwrap builds the layout, so the mount points
of the later binds can be made inside them) and made read-only at the end with `--remount-ro`,
which in bwrap 0.8 is not recursive: binds inside stay as they were (tested:
tests/test_sandbox_escapes.py).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from learnagent.sandbox import policy

PRIVATE_HOME = "/tmp/home"
PRIVATE_TMP = "/tmp"


@functools.lru_cache(maxsize=1)
def probe_bwrap() -> bool:
    """bwrap is installed *and* works here (user namespaces may be disabled); probed once."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    probe = [exe, "--die-with-parent", "--unshare-pid", "--unshare-net", "--new-session", "--cap-drop", "ALL",
             "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "true"]
    try:
        return subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _hide(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path), "--remount-ro", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _folders_to_hide(hide: tuple[Path, ...], worktree: Path) -> list[Path]:
    """Existing folders to cover; those under /tmp are gone already (the private /tmp), and `/` or
    an ancestor of /tmp cannot be covered without losing the system."""
    out = []
    for folder in hide:
        if not folder.is_dir() or _inside(folder, Path(PRIVATE_TMP)) or _inside(Path(PRIVATE_TMP), folder):
            continue
        if folder == worktree:
            continue
        out.append(folder)
    return out


def build_argv(command: str, *, worktree: Path, private_tmp: Path, network: bool,
               bwrap_exe: str = "bwrap", shell: str = "bash", hide: tuple[Path, ...] = (),
               interpreters: tuple[Path, ...] = ()) -> list[str]:
    """The full bwrap argv running `shell -c command` in `worktree`. `interpreters`: more Python
    environments to keep visible (read-only) where a covered folder holds them, besides learnagent's
    own: the project's (its `.venv` lives in the hidden repository), for its tests."""
    worktree = worktree.resolve()
    args = [bwrap_exe, "--die-with-parent", "--unshare-pid", "--new-session", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if not network:
        args.append("--unshare-net")
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--bind", str(private_tmp), PRIVATE_TMP, "--dir", PRIVATE_HOME]
    for secret in policy.hidden_paths():
        if secret == worktree or secret in worktree.parents:
            continue  # never hide the worktree itself (it is bound again below anyway)
        args += _hide(secret)
    hidden = _folders_to_hide(tuple(Path(p).resolve() for p in hide), worktree)
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    covered = [Path(PRIVATE_TMP), *hidden]
    data = policy.learnagent_data_home()
    if data.is_dir() and data != worktree:
        args += ["--tmpfs", str(data)]  # the worktree inside it is bound again below
        covered.append(data)
    for root in policy.interpreter_roots():
        if root.is_dir() and any(_inside(root, c) for c in covered):
            args += ["--ro-bind", str(root), str(root)]
    # the project's venv (e.g. <repo>/.venv, inside the hidden repository): bound again when a
    # covered folder holds it, but never one that is, or holds, a hidden folder or the data home
    never = [*(Path(p).resolve() for p in hide), data]
    for root in interpreters:
        if (root.is_dir() and any(_inside(root, c) for c in covered)
                and not any(_inside(n, root) for n in never)):
            args += ["--ro-bind", str(root), str(root)]
    args += ["--bind", str(worktree), str(worktree)]
    for folder in hidden:
        args += ["--remount-ro", str(folder)]
    args += ["--chdir", str(worktree), "--", shell, "-c", command]
    return args
