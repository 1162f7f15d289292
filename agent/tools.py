"""The tools the agent acts through. Each returns the text the model sees next.

File tools go through the sandbox's path guard (no path outside the worktree, through `..` or
symlinks) and the repository's `.learnagentignore`; commands run in the sandbox.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from learnagent.agent.actions import Action, FormatError, parse_edit_blocks
from learnagent.core.ignore import IgnoreRules
from learnagent.sandbox import CommandResult, Sandbox
from learnagent.sandbox.paths import resolve_in_worktree

MAX_READ_LINES = 400
MAX_LIST_ENTRIES = 300
MAX_SEARCH_HITS = 60
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
    output_cap: int = 20_000
    on_test: Callable[[str, CommandResult], None] | None = None  # records the agent's test runs

    def __post_init__(self):
        self.worktree = Path(self.worktree).resolve()
        self.ignore = IgnoreRules.for_repo(self.worktree)

    def run(self, action: Action) -> str:
        handler = getattr(self, f"tool_{action.name}")
        return handler(action)

    # ---- files ----------------------------------------------------------------------
    def _path(self, rel: str, *, must_exist: bool = True, readable: bool = True) -> Path:
        path = resolve_in_worktree(self.worktree, rel)  # raises PathOutsideWorktree with a clear message
        relative = path.relative_to(self.worktree).as_posix()
        if readable and relative not in ("", ".") and self.ignore.is_ignored(relative):
            raise ToolError(f"{rel} is excluded by .learnagentignore (secrets and similar files are not read)")
        if must_exist and not path.exists():
            raise ToolError(f"{rel} does not exist (use <list/> or <search/> to find files)")
        return path

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.worktree).as_posix()

    def _walk(self, top: Path):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if not self.ignore.is_ignored(self._rel(path)):
                    yield path

    def tool_list(self, action: Action) -> str:
        top = self._path(action.args.get("path", "."))
        if top.is_file():
            return self._rel(top)
        entries = [self._rel(p) for p in self._walk(top)]
        shown = entries[:MAX_LIST_ENTRIES]
        more = f"\n... and {len(entries) - len(shown)} more files" if len(entries) > len(shown) else ""
        return "\n".join(shown) + more if shown else "(no files)"

    def tool_read(self, action: Action) -> str:
        path = self._path(action.args["path"])
        if path.is_dir():
            raise ToolError(f"{action.args['path']} is a directory; use <list path=\"...\"/>")
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            raise ToolError(f"{action.args['path']} is a binary file")
        lines = data.decode("utf-8", errors="replace").splitlines()
        start = _int_arg(action, "start", 1)
        end = _int_arg(action, "end", min(len(lines), start + MAX_READ_LINES - 1))
        end = min(end, len(lines), start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5} {lines[n - 1]}" for n in range(max(start, 1), end + 1))
        tail = f"\n... ({len(lines) - end} more lines; read with start=\"{end + 1}\")" if end < len(lines) else ""
        return f"{self._rel(path)} ({len(lines)} lines)\n{body}{tail}"

    def tool_search(self, action: Action) -> str:
        try:
            pattern = re.compile(action.args["pattern"])
        except re.error as exc:
            raise ToolError(f"bad regular expression: {exc}") from None
        top = self._path(action.args.get("path", "."))
        hits = []
        for path in ([top] if top.is_file() else self._walk(top)):
            try:
                text = path.read_text(errors="strict")
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{self._rel(path)}:{n}: {line.strip()[:200]}")
                    if len(hits) >= MAX_SEARCH_HITS:
                        return "\n".join(hits) + f"\n... (stopped at {MAX_SEARCH_HITS} matches)"
        return "\n".join(hits) if hits else "no matches"

    def tool_write(self, action: Action) -> str:
        path = self._path(action.args["path"], must_exist=False)
        if path.is_dir():
            raise ToolError(f"{action.args['path']} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        content = action.body if action.body.endswith("\n") or not action.body else action.body + "\n"
        existed = path.exists()
        path.write_text(content)
        return f"{'overwrote' if existed else 'created'} {self._rel(path)} ({content.count(chr(10))} lines)"

    def tool_edit(self, action: Action) -> str:
        path = self._path(action.args["path"])
        try:
            blocks = parse_edit_blocks(action.body)
        except FormatError as exc:
            raise ToolError(str(exc)) from None
        text = path.read_text()
        for i, (search, replace) in enumerate(blocks, 1):
            text = _apply_block(text, search, replace, i, action.args["path"])
        path.write_text(text)
        return f"edited {self._rel(path)}: {len(blocks)} block(s) applied"

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


def _apply_block(text: str, search: str, replace: str, index: int, name: str) -> str:
    if search == "":
        if text.strip():
            raise ToolError(f"block {index}: an empty SEARCH only works on an empty file; quote the lines to replace")
        return replace + ("\n" if replace and not replace.endswith("\n") else "")
    count = text.count(search)
    if count == 1:
        return text.replace(search, replace, 1)
    if count > 1:
        raise ToolError(f"block {index}: SEARCH matches {count} places in {name}; include more lines to make it unique")
    # tolerate differences in trailing whitespace, a common slip of small models
    lines, wanted = text.splitlines(keepends=True), search.splitlines()
    stripped = [l.rstrip() for l in wanted]
    for start in range(len(lines) - len(wanted) + 1):
        if [l.rstrip() for l in lines[start:start + len(wanted)]] == stripped:
            new = replace + ("\n" if not replace.endswith("\n") and start + len(wanted) < len(lines) else "")
            return "".join(lines[:start]) + new + "".join(lines[start + len(wanted):])
    close = difflib.get_close_matches(wanted[0].strip(), [l.strip() for l in lines], n=3, cutoff=0.5)
    hint = ("; lines that look close: " + " | ".join(close)) if close else ""
    raise ToolError(f"block {index}: SEARCH does not match any lines in {name} exactly (read the file and quote "
                    f"the lines as they are){hint}")
