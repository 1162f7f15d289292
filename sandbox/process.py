"""Run one process tree with a timeout and a bounded output buffer, and leave nothing behind.

- The child starts a new session (its own process group), stdin is /dev/null, stderr is
  merged into stdout.
- Output is read incrementally; only the first and last parts are kept (`CappedBuffer`), so
  `yes` running for minutes costs no memory.
- On timeout: SIGTERM to the group (and cgroup), a short grace, then SIGKILL.
- When the main process exits, whatever it left running (`cmd &`) is killed too: a leftover
  holding the pipe would otherwise keep the read going until the timeout.
- The exit is observed with waitid(WNOWAIT) so the leader's pid (= the group id) is not
  reaped, and cannot be reused, before the group has been killed.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from learnagent.sandbox.limits import PidsCgroup

TERM_GRACE_S = 1.0
DRAIN_S = 2.0


class CappedBuffer:
    """Keeps the first half and the last half of `cap` bytes of a stream."""

    def __init__(self, cap: int):
        self.cap = max(0, int(cap))
        self.head_cap = self.cap // 2
        self.tail_cap = self.cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_cap:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_cap:  # trim in batches: amortised O(1) per byte
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_cap:]) if self.tail_cap else b""
        if not self.truncated:
            return (bytes(self.head) + tail).decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(tail)
        marker = f"\n[... output truncated: {omitted} of {self.total} bytes omitted ...]\n"
        return (bytes(self.head).decode("utf-8", errors="replace") + marker
                + tail.decode("utf-8", errors="replace"))


@dataclass
class ProcessOutcome:
    exit_code: int | None  # None when killed for the timeout
    output: str
    duration_s: float
    timed_out: bool
    truncated: bool


def _exited(pid: int) -> bool:
    """True once `pid` has exited, without reaping it (the pid stays reserved as our group id)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signal_group(pgid: int, sig: int, cgroup: PidsCgroup | None) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.signal_all(sig)


def _kill_everything(pgid: int, cgroup: PidsCgroup | None) -> None:
    # One killpg is atomic against forks in the group: fork() re-checks for a pending fatal
    # signal under the same lock the group walk holds, so no member can slip out. (Members
    # that called setsid() are outside the group: the cgroup, or bwrap's pid namespace,
    # catches those.) The leader stays a zombie until reaped, so the call cannot fail for it.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_all()


def run_process(argv: list[str], *, cwd: str, env: dict[str, str], timeout: float, output_cap: int,
                cgroup: PidsCgroup | None = None,
                preexec: Callable[[], None] | None = None) -> ProcessOutcome:
    start = time.monotonic()
    deadline = start + max(0.0, float(timeout))

    def child_setup() -> None:
        if cgroup is not None:
            cgroup.join_from_child()
        if preexec is not None:
            preexec()

    use_hook = cgroup is not None or preexec is not None
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                            preexec_fn=child_setup if use_hook else None)
    pgid = proc.pid  # start_new_session: the child leads its own group
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = CappedBuffer(output_cap)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    timed_out = False
    eof = False
    killed = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if _exited(proc.pid):
                break
            if eof:  # output closed but the process lives on: just wait for it
                time.sleep(min(0.05, remaining))
                continue
            if sel.select(timeout=min(0.05, remaining)):
                eof = not _read_available(fd, buf)

        if timed_out:
            _signal_group(pgid, signal.SIGTERM, cgroup)
            grace_end = time.monotonic() + TERM_GRACE_S
            while time.monotonic() < grace_end and not _exited(proc.pid):
                if not eof and sel.select(timeout=0.02):
                    eof = not _read_available(fd, buf)
                elif eof:
                    time.sleep(0.02)
        # Timed out or not: nothing the command started may outlive it.
        _kill_everything(pgid, cgroup)
        killed = True
        drain_end = time.monotonic() + DRAIN_S
        while not eof and time.monotonic() < drain_end:
            if sel.select(timeout=0.05):
                eof = not _read_available(fd, buf)
    finally:
        if not killed:  # interrupted (Ctrl-C) or failed mid-run: still take the whole tree down
            _kill_everything(pgid, cgroup)
        sel.close()
        proc.stdout.close()
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILLed above; last resort
            proc.kill()
            code = proc.wait()
    return ProcessOutcome(exit_code=None if timed_out else code, output=buf.text(),
                          duration_s=time.monotonic() - start, timed_out=timed_out,
                          truncated=buf.truncated)


def _read_available(fd: int, buf: CappedBuffer) -> bool:
    """Read what is there (bounded per call so timeouts stay responsive); False at EOF."""
    for _ in range(64):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buf.add(chunk)
    return True
