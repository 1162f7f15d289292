"""Live display of an episode: steps, model text as it streams, tool calls, tokens; then diff and tests."""

from __future__ import annotations

import errno
import os
import sys

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

RESULT_LINES = 8


class ClosableConsole(Console):
    """rich ends the program (SystemExit 1) when its output is closed under it (`learnagent do ... |
    head`); a command that must first record or clean up gets the closed output raised as what it is."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


def silence_stdout() -> None:
    """Point stdout at /dev/null: its reader is gone, and Python would report the failed flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class LiveObserver:
    """Implements agent.loop.Observer with rich, printing as things happen (works in pipes too)."""

    def __init__(self, console: Console, stream_model: bool = True):
        self.console, self.stream_model = console, stream_model
        self.total_tokens = 0
        self._streamed = False

    def on_step(self, step: int) -> None:
        self.console.rule(f"[bold]step {step}", style="dim")
        self._streamed = False

    def on_model_text(self, text: str) -> None:
        if self.stream_model and text:
            self.console.print(Text(text, style="dim"), end="", soft_wrap=True)
            self._streamed = True

    def on_model_done(self, step, completion) -> None:
        if self._streamed:
            self.console.print()
        self.total_tokens += completion.prompt_tokens + completion.completion_tokens
        self.console.print(f"[dim]{completion.prompt_tokens}+{completion.completion_tokens} tokens, "
                           f"{completion.duration_s:.1f}s · total {self.total_tokens} tokens[/]")

    def on_action(self, step, action) -> None:
        args = " ".join(f'{k}="{v}"' for k, v in action.args.items())
        body = f" {action.body.strip().splitlines()[0][:80]}" if action.name == "run" and action.body.strip() else ""
        self.console.print(f"[bold cyan]→ {action.name}[/] {args}{body}", highlight=False)

    def on_result(self, step, name, ok, output) -> None:
        lines = output.rstrip().splitlines()
        shown = "\n".join(lines[:RESULT_LINES]) + (f"\n… {len(lines) - RESULT_LINES} more lines" if len(lines) > RESULT_LINES else "")
        style = "green" if ok else "red"
        self.console.print(Text(shown or "(no output)", style=style if not ok else "white"), highlight=False)
        if not ok:
            self.console.print(f"[{style}]✗ {name} reported an error to the model[/]")


def show_diff(console: Console, diff: str) -> None:
    if not diff.strip():
        console.print("[yellow]The agent made no changes.[/]")
        return
    console.print(Panel(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True), title="diff", border_style="blue"))


def show_test(console: Console, test) -> None:
    if test is None:
        console.print("[yellow]No tests were run.[/]")
        return
    if test.passed:
        console.print(f"[bold green]✓ tests passed[/] ({test.command}, {test.duration_s:.1f}s)")
        return
    why = "timed out" if test.timed_out else f"exit code {test.exit_code}"
    tail = "\n".join(test.output.rstrip().splitlines()[-15:])
    console.print(Panel(Text(tail), title=f"✗ tests failed: {test.command} ({why})", border_style="red"))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StepProgress:
    """Progress of a long loop. On a terminal: a rich bar that goes away when done. Without one
    (cron, a pipe, a log file): a plain line each 5% of the way (but not more often than every
    5 seconds, so quick jobs stay quiet) and at least every `interval` seconds
    (LEARNAGENT_PROGRESS_SECONDS, default 60; 0 prints every step), so a log shows the work moving
    and how long is left."""

    def __init__(self, console: Console, label: str, unit: str, interval: float | None = None):
        import os
        import time

        if interval is None:
            try:
                interval = max(0.0, float(os.environ.get("LEARNAGENT_PROGRESS_SECONDS", "60")))
            except ValueError:
                interval = 60.0
        self.console, self.label, self.unit = console, label, unit
        self.interval, self.min_gap = interval, min(5.0, interval)
        self._clock = time.monotonic
        self.started = self._clock()
        self._last_line, self._last_done = self.started, 0
        self._before = None  # work done before this run (a resumed job): not in the rate
        self._bar = self._task = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(unit), TextColumn("· {task.fields[note]}"), TimeElapsedColumn(),
                                 console=console, transient=True)
            self._bar.start()

    def update(self, done: int, total: int, note: str = "") -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=total, note=note)
            self._bar.update(self._task, completed=done, total=total, note=note)
            return
        now = self._clock()
        if self._before is None:
            self._before = self._last_done = max(0, done - 1)
        step = max(1, total // 20)
        gap = now - self._last_line
        moved = done // step != self._last_done // step
        if not (gap >= self.interval or (moved and gap >= self.min_gap)):
            return
        self._last_line, self._last_done = now, done
        elapsed = now - self.started
        pct = f" ({done / total:.0%})" if total else ""
        rate = elapsed / max(1, done - self._before)
        left = f", about {_clock(rate * (total - done))} left" if 0 < done < total else ""
        self.console.print(f"{self.label}: {done:,}/{total:,} {self.unit}{pct}" + (f", {note}" if note else "")
                           + f", {_clock(elapsed)} elapsed{left}", highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
