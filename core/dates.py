"""Dates as people type them after `--since`: one parser for `forget --since` and `history import --since`.

ISO dates and times (`2024-05-01`, `2024-05-01T14:30`, with or without a zone) are read here, as local
time unless they name a zone, so a bare date means its midnight. Everything else goes to git's own
date parser, the one `git log --since` uses ("2 weeks ago", "yesterday", "last tuesday", "@1714521600"),
through `git config --type=expiry-date`, which, unlike `git log`, refuses words it does not know
instead of reading them as "now".
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime

from learnagent.core.errors import UsageError

_EXAMPLES = 'e.g. 2024-05-01, 2024-05-01T14:30, "2 weeks ago", yesterday'


def parse_since(text: str, option: str = "--since") -> float:
    """Epoch seconds for a --since value; a one-line UsageError (exit 2) for anything else."""
    value = (text or "").strip()
    if not value:
        raise UsageError(f"{option} needs a date ({_EXAMPLES})")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None:
        return _git_date(value, option)
    if when.tzinfo is None:
        when = when.astimezone()  # naive: the user's local time
    return when.timestamp()


def _git_date(value: str, option: str) -> float:
    try:
        proc = subprocess.run(["git", "-c", f"learnagent.since={value}", "config", "--type=expiry-date",
                               "learnagent.since"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{option} '{value}': git could not read it ({exc})") from None
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise UsageError(f"{option} '{value}' is not a date ({_EXAMPLES})")
    seconds = int(proc.stdout.strip())
    return min(float(seconds), time.time())  # "now" comes back as the largest timestamp git has


def git_since(text: str, option: str = "--since") -> str:
    """The same date as a `git log --since=` value git cannot read differently: `@EPOCH`."""
    return f"@{int(parse_since(text, option))}"
