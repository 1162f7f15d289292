"""The bubblewrap command line for one sandboxed command.

Layout inside the sandbox (later mounts cover earlier ones):
  /                      read-only bind of the host root
  /dev, /proc            minimal devices, a /proc for the new pid namespace
  /tmp                   the Sandbox's private tmp folder (read-write; HOME is /tmp/home)
  secrets                empty read-only tmpfs (folders) or /dev/null (files), see policy.py
  data_home()            empty tmpfs: the episode DB, adapters and other worktrees vanish
  <main repo>/.git       read-only (the worktree's `.git` file points into it)
    .git/worktrees/<n>   read-write: the worktree's own index and HEAD, so `git add` works
    .git/objects         read-write: `git add` writes blobs there (content-addressed, append-only)
    .git/config, hooks   read-only again on top: a written hook or core.hooksPath/fsmonitor
                         would run on the user's machine at their next git command
    commondir, gitdir    read-only: rewritten, they would point the user's git elsewhere
  <worktree>             read-write, except its `.git` pointer file (read-only)
A plain clone (`.git` a folder inside the worktree, not what learnagent creates) is weaker:
its config and hooks are read-only, but the rest of `.git` is writable because `git add`
must create `.git/index.lock` there.
Capabilities are dropped (`--cap-drop ALL`): run as root, bwrap otherwise keeps them all and
the command could simply remount / read-write.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from learnagent.core.gitdirs import git_dirs
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


def _worktree_config_enabled(common: Path) -> bool:
    try:
        text = (common / "config").read_text(errors="replace").lower().replace(" ", "")
    except OSError:
        return False
    return "worktreeconfig=true" in text


def _git_mounts(worktree: Path) -> list[str]:
    dirs = git_dirs(worktree)
    if dirs is None:
        return []
    gitdir, common = dirs
    args = ["--ro-bind", str(common), str(common), "--bind", str(gitdir), str(gitdir)]
    if (common / "objects").is_dir():
        args += ["--bind", str(common / "objects"), str(common / "objects")]
    # Files git executes or obeys, read-only again on top of the writable binds above.
    for path in (common / "config", common / "hooks", gitdir / "hooks", gitdir / "config"):
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    if gitdir == common and not (common / "hooks").exists():
        args += ["--ro-bind", "/dev/null", str(common / "hooks")]  # block creating a hooks folder
    # Pointer files: rewritten, they would send the user's next git command in this worktree
    # to a folder the command controls (with its own config: core.fsmonitor runs programs).
    for path in (gitdir / "commondir", gitdir / "gitdir"):
        if path.is_file():
            args += ["--ro-bind", str(path), str(path)]
    worktree_config = gitdir / "config.worktree"
    if worktree_config.exists():
        args += ["--ro-bind", str(worktree_config), str(worktree_config)]
    elif gitdir != common and _worktree_config_enabled(common):
        # The mount point becomes an empty file on the host: harmless, and it blocks writing one.
        args += ["--ro-bind", "/dev/null", str(worktree_config)]
    return args


def _hide(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path), "--remount-ro", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def build_argv(command: str, *, worktree: Path, private_tmp: Path, network: bool,
               bwrap_exe: str = "bwrap", shell: str = "bash", interpreters: tuple[Path, ...] = ()) -> list[str]:
    """The full bwrap argv running `shell -c command` in `worktree`. `interpreters`: more Python
    environments to keep visible (read-only), like learnagent's own (the project's, for its tests)."""
    worktree = worktree.resolve()
    args = [bwrap_exe, "--die-with-parent", "--unshare-pid", "--new-session", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if not network:
        args.append("--unshare-net")
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--bind", str(private_tmp), PRIVATE_TMP, "--dir", PRIVATE_HOME]
    for root in [*policy.interpreter_roots(), *interpreters]:  # a venv under /tmp would vanish behind the private /tmp
        if Path(PRIVATE_TMP) in root.parents and root.is_dir():
            args += ["--ro-bind", str(root), str(root)]
    for secret in policy.hidden_paths():
        if secret == worktree or secret in worktree.parents:
            continue  # never hide the worktree itself (it is bound again below anyway)
        args += _hide(secret)
    data = policy.learnagent_data_home()
    if data.is_dir() and data != worktree:
        args += ["--tmpfs", str(data)]  # the worktree inside it is bound again below
    args += _git_mounts(worktree)
    args += ["--bind", str(worktree), str(worktree)]
    if (worktree / ".git").is_file():  # the worktree's own pointer to its gitdir, same reason
        args += ["--ro-bind", str(worktree / ".git"), str(worktree / ".git")]
    args += ["--chdir", str(worktree), "--", shell, "-c", command]
    return args
