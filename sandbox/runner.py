"""`Sandbox`: runs every command of an episode (tool calls and the test run).

With bubblewrap (kind "bwrap"): no network unless `network=True`, only the worktree and a
private /tmp writable, secrets, the learnagent data home and the `hide` folders (the user's
repository) invisible (layout in bwrap.py).
Without it (kind "none"): the same timeouts, output cap, process-tree kill, pids limit and
minimal environment, but no filesystem or network isolation - mode "auto" says so once per
process through `on_warning` (or `warnings.warn` when no callback is given), mode "require"
refuses with SandboxUnavailable, mode "none" is silent.

Environment inside (both kinds): PATH = the venv's bin + system folders; HOME and TMPDIR
in the private tmp; LANG (default C.UTF-8) and LC_ALL, LC_CTYPE, TZ, USER, LOGNAME copied
when set; TERM=dumb, PAGER/GIT_PAGER=cat, GIT_TERMINAL_PROMPT=0, PYTHONUNBUFFERED=1,
VIRTUAL_ENV; plus whatever the caller passes in `env`. Nothing else of the user's
environment (API keys, tokens, SSH_AUTH_SOCK) passes through. The private tmp (and so HOME)
lasts as long as the Sandbox, so state like ~/.cache survives between an episode's commands.
"""

from __future__ import annotations

import shutil
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from learnagent.core.errors import LearnagentError, UsageError
from learnagent.sandbox import bwrap, limits, policy, tmpdirs
from learnagent.sandbox.process import run_process

MODES = ("auto", "require", "none")
# Processes + threads for one command. Generous: a test run with a thread pool per process
# must fit; a fork bomb stops here instead of exhausting the machine.
DEFAULT_MAX_PIDS = 1024

NO_BWRAP_WARNING = ("bubblewrap (bwrap) is not available here: agent commands run WITHOUT a sandbox "
                    "(network and files outside the worktree are reachable); install bubblewrap, "
                    "or set [sandbox] mode = \"none\" to silence this")


class SandboxUnavailable(LearnagentError):
    pass


_warned_no_bwrap = False  # once per process: an episode may build several Sandboxes


def _warn_no_bwrap_once(on_warning: Callable[[str], None] | None) -> None:
    global _warned_no_bwrap
    if _warned_no_bwrap:
        return
    _warned_no_bwrap = True
    if on_warning is not None:
        on_warning(NO_BWRAP_WARNING)
    else:
        warnings.warn(NO_BWRAP_WARNING, RuntimeWarning, stacklevel=3)


def bwrap_available() -> bool:
    """bubblewrap is installed and works here. Probed once per process (a trivial bwrap run).

    Sandbox looks this name up in this module at construction, so tests that need the
    fallback monkeypatch `learnagent.sandbox.runner.bwrap_available`.
    """
    return bwrap.probe_bwrap()


@dataclass
class CommandResult:
    exit_code: int | None  # None when the command was killed for its timeout
    output: str  # stdout and stderr interleaved, capped (head + marker + tail)
    duration_s: float
    timed_out: bool
    truncated: bool
    sandboxed: bool  # ran under bubblewrap


class Sandbox:
    def __init__(self, worktree: Path, mode: str = "auto", network: bool = False,
                 on_warning: Callable[[str], None] | None = None, env: dict | None = None,
                 max_pids: int = DEFAULT_MAX_PIDS, hide: Iterable[Path] = (), interpreters: Iterable[Path] = ()):
        """`hide`: folders the command must not see at all under bwrap (the user's repository:
        its working tree and git dirs); an episode's folder is bound again on top of them.
        `interpreters`: Python environments kept visible read-only (the project's, for its tests)."""
        if mode not in MODES:
            raise UsageError(f"sandbox mode '{mode}' is not one of: {', '.join(MODES)}")
        self.worktree = Path(worktree).resolve()
        if not self.worktree.is_dir():
            raise LearnagentError(f"sandbox worktree {self.worktree} is not a folder")
        self.mode = mode
        self.network = bool(network)
        self.extra_env = dict(env or {})
        self.interpreters = tuple(Path(p).resolve() for p in interpreters)  # the project's Python, for its tests
        self.max_pids = int(max_pids)
        self.hide = tuple(Path(p).resolve() for p in hide)
        self._shell = shutil.which("bash")
        if self._shell is None:
            raise LearnagentError("bash is not installed; learnagent runs agent commands with bash")

        if mode == "none":
            self._kind = "none"
        elif bwrap_available():
            self._kind = "bwrap"
        elif mode == "require":
            raise SandboxUnavailable("sandbox mode is 'require' but bubblewrap (bwrap) is missing or cannot "
                                     "run here; install bubblewrap or set [sandbox] mode = \"auto\"")
        else:
            self._kind = "none"
            _warn_no_bwrap_once(on_warning)

        # mode 0700, named after this process so that `learnagent gc` can tell an orphan (tmpdirs.py)
        self._tmp = tmpdirs.make_private_tmp()
        (self._tmp / "home").mkdir()
        self._cleanup = weakref.finalize(self, tmpdirs.remove_tree, str(self._tmp))

    @property
    def kind(self) -> str:
        """"bwrap" or "none"."""
        return self._kind

    @property
    def private_tmp(self) -> Path:
        """Host path of the private tmp folder (/tmp inside bwrap)."""
        return self._tmp

    def env(self) -> dict[str, str]:
        if self._kind == "bwrap":
            return policy.sandbox_env(bwrap.PRIVATE_HOME, bwrap.PRIVATE_TMP, self.extra_env)
        return policy.sandbox_env(str(self._tmp / "home"), str(self._tmp), self.extra_env)

    def argv(self, command: str) -> list[str]:
        if self._kind == "bwrap":
            return bwrap.build_argv(command, worktree=self.worktree, private_tmp=self._tmp,
                                    network=self.network, bwrap_exe=shutil.which("bwrap") or "bwrap",
                                    shell=self._shell, hide=self.hide, interpreters=self.interpreters)
        return [self._shell, "-c", command]

    def run(self, command: str, timeout: float = 120, output_cap: int = 20_000) -> CommandResult:
        """Run `bash -c command` in the worktree with stdin closed; never raises for the command's failure."""
        if not self._tmp.is_dir():
            raise LearnagentError("this sandbox was closed")
        cgroup = limits.PidsCgroup.create(self.max_pids)
        preexec = None
        if cgroup is None:
            nproc = limits.nproc_limit_for(self.max_pids)
            if nproc is not None:
                preexec = lambda: limits.apply_nproc_limit(nproc)  # noqa: E731
        try:
            outcome = run_process(self.argv(command), cwd=str(self.worktree), env=self.env(),
                                  timeout=timeout, output_cap=output_cap, cgroup=cgroup, preexec=preexec)
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.close()
        return CommandResult(exit_code=outcome.exit_code, output=outcome.output, duration_s=outcome.duration_s,
                             timed_out=outcome.timed_out, truncated=outcome.truncated,
                             sandboxed=self._kind == "bwrap")

    def close(self) -> None:
        """Remove the private tmp (and HOME). Also happens when the Sandbox is garbage-collected."""
        self._cleanup()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
