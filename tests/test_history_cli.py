"""`history import` progress and its cap, `status` right after an import, and one date parser for
`history import --since` and `forget --since` — through the real CLI without a terminal (as cron)."""

from __future__ import annotations

import json
import re
import time

import pytest

from cli_helpers import run_cli
from conftest import git

DAY = 86400


def _commit(repo, i: int, days_ago: float) -> None:
    (repo / f"mod_{i}.py").write_text(f"def f_{i}():\n    return {i}\n")
    git(repo, "add", ".")
    when = f"@{int(time.time() - days_ago * DAY)} +0000"
    git(repo, "commit", "-q", "-m", f"add f_{i}", env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})


@pytest.fixture
def history_repo(git_repo):
    """git_repo's root commit (never imported) and 15 more: 12 a month ago, 3 yesterday."""
    for i in range(12):
        _commit(git_repo, i, days_ago=30 - i)  # 30 .. 19 days ago
    for i in range(12, 15):
        _commit(git_repo, i, days_ago=1)
    return git_repo


def test_import_shows_progress_without_a_terminal_and_says_when_it_stopped_at_max(history_repo):
    out = run_cli("history", "import", "--max", "5", cwd=history_repo, env={"LEARNAGENT_PROGRESS_SECONDS": "0"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    progress = [line for line in lines if line.startswith("history import: ")]
    # looking at commits (nothing written yet), then writing them: the count is what is in the store
    counts = [re.match(r"history import: (\d+)/5 imported", line).group(1) for line in progress]
    assert set(counts[:counts.index("1")]) == {"0"} and counts[counts.index("1"):] == list("12345")
    assert "commits looked at, 1 to import" in progress[0] and "writing the episodes" in progress[-1]
    assert lines[-1] == "imported 5 of 16 commits as episodes; stopped at --max 5: raise --max to import more"
    # the rest, on a second run: nothing capped, the skipped ones counted
    again = run_cli("history", "import", cwd=history_repo)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "imported 10 of 16 commits as episodes (skipped: 5 already imported, 1 root commit)"


def test_import_is_quiet_when_quick_and_the_default_interval(history_repo):
    out = run_cli("history", "import", cwd=history_repo)  # a second's work: no progress lines at all
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == ["imported 15 of 16 commits as episodes (skipped: 1 root commit)"]


def test_status_after_an_import_says_imports_are_not_counted(history_repo):
    assert run_cli("history", "import", cwd=history_repo).returncode == 0
    out = run_cli("status", cwd=history_repo, env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "no `learnagent do` episodes yet" in out.stdout
    assert "15 imported from git history are not counted" in out.stdout
    data = json.loads(run_cli("status", "--json", cwd=history_repo).stdout)
    assert data["history_imported"] == 15 and data["totals"]["episodes"] == 0


@pytest.mark.parametrize("since", ["3 days ago", "last week"])
def test_git_dates_in_history_import_and_forget_agree(history_repo, since):
    out = run_cli("history", "import", "--since", since, cwd=history_repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imported 3 of 3 commits as episodes"
    assert run_cli("history", "import", cwd=history_repo).returncode == 0  # and now all of them
    forgot = run_cli("forget", "--since", since, "--yes", cwd=history_repo)
    assert forgot.returncode == 0, forgot.stderr
    assert "Forgot 3 episode(s)" in forgot.stdout
    left = json.loads(run_cli("log", "--json", "-n", "100", cwd=history_repo).stdout)
    assert sorted(e["task"] for e in left) == sorted(f"add f_{i}" for i in range(12))


@pytest.mark.parametrize("args", [["history", "import", "--since", "the other day"],
                                  ["forget", "--since", "the other day", "--yes"]])
def test_a_date_nobody_can_read_is_bad_input(history_repo, args):
    out = run_cli(*args, cwd=history_repo)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "is not a date" in out.stderr


def test_sleep_without_a_terminal_prints_training_progress(git_repo, tiny_model_dir):
    """Under cron there is no terminal: the trainer's bar would print nothing until the end."""
    from test_crash_safety import _sleep_env, _tiny_sleep_repo

    _tiny_sleep_repo(git_repo, tiny_model_dir, trained=3)
    env = _sleep_env() | {"LEARNAGENT_PROGRESS_SECONDS": "0"}
    out = run_cli("sleep", "--steps", "3", cwd=git_repo, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("training: ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"], out.stdout
    assert re.search(r"training: 1/3 steps \(33%\), loss \d+\.\d{4}, kl -?\d+\.\d{4}, 0:\d\d:\d\d elapsed, "
                     r"about 0:\d\d:\d\d left", lines[0]), lines[0]
