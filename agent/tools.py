"""The tools the agent acts through. Each returns the text the model sees next.

File tools go through the sandbox's path guard (no path outside the worktree, through `..` or
symlinks) and the repository's `.learnagentignore`; commands run in the sandbox.

Limits (docs/SANDBOX.md, "Tool limits"), because the model and the files it made are hostile:
- every result (and every error) is capped at `output_cap` bytes, head and tail kept;
- `<read>` shows at most MAX_READ_LINES lines, `output_cap` bytes and MAX_LINE_CHARS characters
  of a line, and says how to read the rest;
- FIFOs, sockets and devices are never opened (`fileio.open_regular`), so nothing blocks;
- `<search>` runs its regex in a child process killed after `search_timeout` seconds;
- file names that are not UTF-8 are shown with `\\xNN` escapes and accepted back in that form.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from learnagent.agent.edits import EditError, apply_blocks, parse_edit_blocks
from learnagent.agent.fileio import (NotRegularFile, bounded_lines, from_display, looks_binary, open_regular,
                                     printable)
from learnagent.core.errors import LearnagentError
from learnagent.core.ignore import IgnoreRules
from learnagent.sandbox import CommandResult, Sandbox
from learnagent.sandbox.paths import resolve_in_worktree
from learnagent.sandbox.process import CappedBuffer

if TYPE_CHECKING:  # the tool table (agent/tooltable.py) imports this module for its handlers
    from learnagent.agent.actions import Action

MAX_READ_LINES = 400
MAX_LINE_CHARS = 2000  # a longer line is cut; the result says how to read the rest
MAX_LIST_ENTRIES = 300
MAX_LIST_COUNT = 10_000  # files counted for "... and N more" before the walk stops
MAX_SEARCH_HITS = 60
SEARCH_TIMEOUT_S = 10.0
MAX_EDIT_BYTES = 10 << 20  # <edit> reads the whole file; bigger ones are edited with commands
COUNT_LINES_MAX_BYTES = 64 << 20  # <read> counts the lines of files up to this size
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", "target",
             "dist", "build", ".learnagent"}


class ToolError(Exception):
    """The tool could not do what was asked; the message goes back to the model."""


class Finished(Exception):
    """The model called <finish>; carries its summary."""

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


@dataclass
class Tools:
    worktree: Path
    sandbox: Sandbox
    test_command: str
    command_timeout: int = 120
    test_timeout: int = 600
    output_cap: int = 20_000  # bytes of any tool result the model sees (and the store records)
    on_test: Callable[[str, CommandResult], None] | None = None  # records the agent's test runs
    search_timeout: float = SEARCH_TIMEOUT_S
    # the files no tool reads: `do` passes the user's rules (from the Repository) rooted at the episode
    # folder, never the folder's own `.learnagentignore` (the agent can edit that); default: the folder's own
    ignore: IgnoreRules | None = None

    def __post_init__(self):
        self.worktree = Path(self.worktree).resolve()
        if self.ignore is None:
            self.ignore = IgnoreRules.in_folder(self.worktree)

    def run(self, action: Action) -> str:
        """The tool's result, valid UTF-8 and at most `output_cap` bytes; any error as a ToolError likewise."""
        handler = action.spec.handler  # the row of the tool table (agent/tooltable.py) the parser found
        try:
            return cap_bytes(printable(handler(self, action)), self.output_cap)
        except (ToolError, EditError, LearnagentError, OSError, UnicodeError) as exc:
            # errors are capped like results: the path guard's, for one, quotes the model's path
            raise ToolError(cap_bytes(printable(str(exc)), self.output_cap)) from None

    # ---- files ----------------------------------------------------------------------
    def _path(self, rel: str, *, must_exist: bool = True, readable: bool = True) -> Path:
        path = resolve_in_worktree(self.worktree, rel)  # raises PathOutsideWorktree with a clear message
        if not os.path.lexists(path) and (real := from_display(rel)) is not None:
            path = resolve_in_worktree(self.worktree, real)  # a non-UTF-8 name, as <list/> showed it
        relative = path.relative_to(self.worktree).as_posix()
        if readable and relative not in ("", ".") and self.ignore.is_ignored(relative):
            raise ToolError(f"{rel} is excluded by .learnagentignore (secrets and similar files are not read)")
        if must_exist and not path.exists():
            raise ToolError(f"{rel} does not exist (use <list/> or <search/> to find files)")
        return path

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.worktree).as_posix()

    def _open(self, path: Path, rel: str, **kw) -> int:
        try:
            return open_regular(path, **kw)
        except NotRegularFile as exc:
            raise ToolError(f"{rel} is {exc.kind}; the file tools only open regular files") from None

    def _walk(self, top: Path):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.lower() == ".git":
                    continue  # a worktree's or submodule's pointer file: git metadata, like the folders
                path = Path(dirpath) / name
                if not self.ignore.is_ignored(self._rel(path)):
                    yield path

    def tool_list(self, action: Action) -> str:
        top = self._path(action.args.get("path", "."))
        if top.is_file():
            return self._rel(top)
        entries = []
        for path in self._walk(top):
            entries.append(self._rel(path))
            if len(entries) > MAX_LIST_COUNT:
                break
        shown = entries[:MAX_LIST_ENTRIES]
        if len(entries) > MAX_LIST_COUNT:
            more = f"\n... and more files (over {MAX_LIST_COUNT:,} in all; list a subfolder)"
        elif len(entries) > len(shown):
            more = f"\n... and {len(entries) - len(shown)} more files"
        else:
            more = ""
        if any(printable(e) != e for e in shown):
            more += "\n(\\xNN: a byte of a name that is not UTF-8; use the name as shown)"
        return "\n".join(shown) + more if shown else "(no files)"

    def tool_read(self, action: Action) -> str:
        rel = action.args["path"]
        path = self._path(rel)
        if path.is_dir():
            raise ToolError(f"{rel} is a directory; use <list path=\"...\"/>")
        start = max(_int_arg(action, "start", 1), 1)
        last = start + MAX_READ_LINES - 1
        end = min(_int_arg(action, "end", last), last)
        fd = self._open(path, rel)
        with os.fdopen(fd, "rb") as fh:
            if looks_binary(fd):
                raise ToolError(f"{rel} is a binary file")
            size = os.fstat(fd).st_size
            total = _count_lines(fd) if size <= COUNT_LINES_MAX_BYTES else None
            name = self._rel(path)
            budget = max(self.output_cap - 400, 1000)  # bytes for the numbered lines; the rest for notes
            body, used, shown_to, capped, more = [], 0, start - 1, False, False
            for n, (raw, length) in enumerate(bounded_lines(fh, MAX_LINE_CHARS * 4), 1):
                if n < start:
                    continue
                if n > end:
                    more = True
                    break
                text = raw.removesuffix(b"\r").decode("utf-8", "replace")
                line = f"{n:>5} {text[:MAX_LINE_CHARS]}"
                if len(text) > MAX_LINE_CHARS or length > len(raw):
                    line += (f" [... line {n} cut at {MAX_LINE_CHARS} characters of {length:,} bytes; more: "
                             f"<run>sed -n {n}p {shlex.quote(name)} | cut -c {MAX_LINE_CHARS + 1}-"
                             f"{MAX_LINE_CHARS * 5}</run>]")
                size_b = len(line.encode("utf-8", "surrogatepass")) + 1
                if body and used + size_b > budget:
                    capped = True
                    break
                body.append(line)
                used += size_b
                shown_to = n
        head = f"{name} ({total} lines)" if total is not None else f"{name} ({size:,} bytes; lines not counted)"
        if capped:
            tail = f"\n... (output capped at {budget:,} bytes; read on with start=\"{shown_to + 1}\")"
        elif total is not None and shown_to < total:
            tail = f"\n... ({total - shown_to} more lines; read with start=\"{shown_to + 1}\")"
        elif more:
            tail = f"\n... (more lines; read with start=\"{shown_to + 1}\")"
        else:
            tail = ""
        return "\n".join([head] + body) + tail

    def tool_search(self, action: Action) -> str:
        pattern = action.args["pattern"]
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad regular expression: {exc}") from None
        top = self._path(action.args.get("path", "."))
        if not top.is_dir():
            os.close(self._open(top, action.args.get("path", ".")))  # refuses a FIFO or device by name
        deadline = time.monotonic() + self.search_timeout
        files: list[str] = []
        walked = True
        for path in ([top] if top.is_file() else self._walk(top)):
            files.append(self._rel(path))
            if len(files) % 500 == 0 and time.monotonic() > deadline:
                walked = False
                break
        hits, timed_out = run_search(self.worktree, pattern, files, MAX_SEARCH_HITS,
                                     max(deadline - time.monotonic(), 0.5))
        lines = [f"{rel}:{n}: {text}" for rel, n, text in hits]
        if timed_out or not walked:
            why = (f"search stopped after {self.search_timeout:g}s: the pattern may backtrack catastrophically "
                   "(nested quantifiers such as (a+)+) or there are too many files; simplify the pattern or "
                   "give a path")
            if not lines:
                raise ToolError(why)
            return "\n".join(lines) + f"\n... ({why})"
        if len(hits) >= MAX_SEARCH_HITS:
            return "\n".join(lines) + f"\n... (stopped at {MAX_SEARCH_HITS} matches)"
        return "\n".join(lines) if lines else "no matches"

    def tool_write(self, action: Action) -> str:
        rel = action.args["path"]
        path = self._path(rel, must_exist=False)
        if path.is_dir():
            raise ToolError(f"{rel} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        content = action.body if action.body.endswith("\n") or not action.body else action.body + "\n"
        existed = os.path.lexists(path)
        self._write(path, rel, content)
        return f"{'overwrote' if existed else 'created'} {self._rel(path)} ({content.count(chr(10))} lines)"

    def tool_edit(self, action: Action) -> str:
        rel = action.args["path"]
        path = self._path(rel)
        blocks = parse_edit_blocks(action.body)  # an EditError reaches the model as a ToolError (run)
        fd = self._open(path, rel)
        with os.fdopen(fd, "rb") as fh:
            if os.fstat(fd).st_size > MAX_EDIT_BYTES:
                raise ToolError(f"{rel} is larger than {MAX_EDIT_BYTES >> 20} MB; change it with a command "
                                "(<run>sed -i ...</run>) instead of <edit>")
            text = fh.read().decode("utf-8")
        text = apply_blocks(text, blocks, rel)
        self._write(path, rel, text)
        return f"edited {self._rel(path)}: {len(blocks)} block(s) applied"

    def _write(self, path: Path, rel: str, content: str) -> None:
        fd = self._open(path, rel, write=True, create=True)
        with os.fdopen(fd, "wb") as fh:
            fh.truncate(0)  # only now, once the descriptor is known to be a regular file
            fh.write(content.encode("utf-8"))

    # ---- commands -------------------------------------------------------------------
    def tool_run(self, action: Action) -> str:
        result = self.sandbox.run(action.body.strip(), timeout=self.command_timeout, output_cap=self.output_cap)
        return _command_report(result, self.command_timeout)

    def tool_test(self, action: Action) -> str:
        if not self.test_command:
            raise ToolError("no test command is configured for this repository")
        result = self.sandbox.run(self.test_command, timeout=self.test_timeout, output_cap=self.output_cap)
        if self.on_test:
            self.on_test(self.test_command, result)
        return f"$ {self.test_command}\n" + _command_report(result, self.test_timeout)

    def tool_finish(self, action: Action) -> str:
        raise Finished(action.body.strip() or "done")


def cap_bytes(text: str, cap: int) -> str:
    """`text` if its UTF-8 form fits in `cap` bytes; else its first and last bytes with a marker between
    (the format of a command's capped output), `cap` bytes in all."""
    data = text.encode("utf-8")
    if len(data) <= cap:
        return text
    buf = CappedBuffer(max(cap - 100, 0))  # room for the marker
    buf.add(data)
    return buf.text()


def _count_lines(fd: int) -> int:
    """Lines as `bounded_lines` yields them: newlines, plus a last line without one."""
    count, offset, last = 0, 0, b""
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
        last = chunk[-1:]
    return count + (1 if last not in (b"", b"\n") else 0)


def run_search(root: Path, pattern: str, files: list[str], max_hits: int,
               timeout: float) -> tuple[list[tuple[str, int, str]], bool]:
    """(hits, timed out): `search_worker` in a child process, killed after `timeout` seconds."""
    job = json.dumps({"root": str(root), "pattern": pattern, "files": files, "max_hits": max_hits}).encode()
    proc = subprocess.Popen([sys.executable, "-m", "learnagent.agent.search_worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timed_out = False
    try:
        out, err = proc.communicate(job, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()  # what it found before the deadline
        timed_out = True
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): never leave the matcher running
            proc.kill()
            proc.wait()
    hits = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            rel, n, text = json.loads(line)
        except ValueError:
            continue  # the last line, cut by the kill
        hits.append((rel, int(n), text))
    if proc.returncode and not timed_out and not hits:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise ToolError(f"search failed: {detail[0][:300]}")
    return hits, timed_out


def _int_arg(action: Action, key: str, default: int) -> int:
    value = action.args.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ToolError(f'{key}="{value}" is not a line number') from None


def _command_report(result: CommandResult, timeout: int) -> str:
    status = f"timed out after {timeout}s (killed)" if result.timed_out else f"exit code {result.exit_code}"
    return f"{result.output.rstrip()}\n[{status}, {result.duration_s:.1f}s]".lstrip("\n")
