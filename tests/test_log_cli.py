"""`learnagent log` and `show` as a user sees them: on a real terminal 80 and 120 columns wide and
piped, with real history imports (long, multi-line commit messages) and a real `do` episode."""

from __future__ import annotations

import json

import pytest

from cli_helpers import plain, run_cli, run_cli_tty, write_script
from conftest import git

SUBJECTS = [f"Refactor the configuration loader step {i} so that nested sections merge in order" for i in range(8)]
IMPORTED = len(SUBJECTS) + 1  # and the commit that adds settings.py
BODY = ("\n\nThe loader used to read every file twice and merge the sections in a random order,\n"
        "which made the precedence of user and repository settings depend on the file system.\n"
        "BODY-LINE-MARKER: nothing of this should appear in `learnagent log`.")


@pytest.fixture
def repo_with_history(git_repo):
    big = "\n".join(f"VALUE_{n} = {n}  # a line of a large module" for n in range(1200)) + "\n"  # < 64 kB: kept whole in meta["before"]
    (git_repo / "settings.py").write_text(big)
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "add the settings module")
    for i, subject in enumerate(SUBJECTS):
        (git_repo / "settings.py").write_text(big.replace("VALUE_1 ", f"VALUE_1 = {i}  #"))
        (git_repo / f"loader_{i}.py").write_text(f"def load_{i}():\n    return {i}\n")
        git(git_repo, "add", ".")
        git(git_repo, "commit", "-q", "-m", subject + BODY)
    out = run_cli("history", "import", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    return git_repo


def _rows(lines: list[str]) -> list[str]:
    return [line for line in lines if line.strip() and not line.lstrip().startswith("id ")]


def _check_rows(repo, lines: list[str], width: int) -> None:
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    header = next(line for line in lines if line.lstrip().startswith("id "))
    assert "task" in header and "outcome" in header
    rows = _rows(lines)
    assert len(rows) == IMPORTED  # one line per episode: the commit bodies never wrap into more rows
    assert not any("BODY-LINE-MARKER" in line or "The loader used" in line for line in lines)
    task_at = header.index("task")
    for row in rows:
        short_id = row.split()[0]
        shown = run_cli("show", short_id, "--json", cwd=repo)  # the id as printed is copyable into show
        assert shown.returncode == 0, shown.stderr
        episode = json.loads(shown.stdout)
        assert episode["id"].startswith(short_id) and len(short_id) < len(episode["id"])
        task_cell = row[task_at:].split("  ")[0].rstrip()
        first_line = episode["task"].splitlines()[0]
        assert task_cell == first_line or len(task_cell) >= 24, row  # the task column is never squeezed to nothing
        assert first_line.startswith(task_cell.rstrip("…").rstrip())


@pytest.mark.parametrize("columns", [80, 120])
def test_log_on_a_terminal_fits_and_ids_are_copyable(repo_with_history, columns):
    code, screen = run_cli_tty(["log"], cwd=repo_with_history, columns=columns)
    assert code == 0, screen
    lines = [line for line in plain(screen) if line.strip()]
    _check_rows(repo_with_history, lines, columns)
    if columns == 120:
        assert "status" in lines[0] and "started" in lines[0]


def test_log_piped_fits_80_columns(repo_with_history):
    out = run_cli("log", cwd=repo_with_history, env={"COLUMNS": ""})  # a pipe: no terminal, no COLUMNS
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout  # no colour codes into a pipe
    _check_rows(repo_with_history, [line for line in out.stdout.splitlines() if line.strip()], 80)


def test_log_all_has_a_repository_column(repo_with_history, tmp_path):
    other = tmp_path / "second-project"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    (other / "a.py").write_text("A = 1\n")
    git(other, "add", ".")
    git(other, "commit", "-q", "-m", "first")
    (other / "a.py").write_text("A = 2\n")
    git(other, "commit", "-q", "-am", "Second project's only change")
    assert run_cli("history", "import", cwd=other).returncode == 0
    code, screen = run_cli_tty(["log", "--all"], cwd=repo_with_history, columns=120)
    assert code == 0, screen
    lines = [line for line in plain(screen) if line.strip()]
    assert "repo" in lines[0].split()
    second = [line for line in lines if "Second project's only change" in line]
    assert len(second) == 1 and "second-project" in second[0]
    assert sum(" repo " in f" {line} " for line in lines[1:]) == IMPORTED  # git_repo's folder is "repo"


def test_log_json_is_summaries_and_show_json_has_the_rest(repo_with_history, tmp_path):
    script = write_script(tmp_path / "s.json", ["<write path=\"notes.txt\">\nhello\n</write>", "<finish>wrote notes</finish>"])
    done = run_cli("do", "write notes", "--model", f"scripted:{script}", "--no-apply", "--sandbox", "none", "--no-tests",
                   cwd=repo_with_history)
    assert done.returncode == 0, done.stderr + done.stdout
    out = run_cli("log", "--json", cwd=repo_with_history)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == IMPORTED + 1
    assert len(out.stdout) < 1500 * len(rows), len(out.stdout)  # summaries: no file contents (the 1,200-line module)
    for row in rows:
        assert not {"meta", "final_diff", "messages", "tool_calls", "before"} & set(row)
        assert "a line of a large module" not in json.dumps(row)
        assert {"id", "task", "status", "outcome", "tests", "model", "started_at", "source", "repo_name"} <= set(row)
    imported = [r for r in rows if r["source"] == "history"]
    assert len(imported) == IMPORTED and all(len(r["commit"]) == 40 and "settings.py" in r["files"] for r in imported)
    mine = next(r for r in rows if r["source"] == "do")
    assert mine["summary"] == "wrote notes" and mine["outcome"] == "kept"
    whole = json.loads(run_cli("show", mine["id"], "--json", cwd=repo_with_history).stdout)
    assert "+hello" in whole["final_diff"] and whole["messages"] and whole["tool_calls"]
    # a commit that changed settings.py (the root commit that adds it has no "before"); rows that share a
    # commit time are ordered by id, which hashes the repository's path, so imported[0] may be either
    refactor = next(r for r in imported if r["task"].startswith("Refactor the configuration loader"))
    history = json.loads(run_cli("show", refactor["id"], "--json", cwd=repo_with_history).stdout)
    assert "a line of a large module" in json.dumps(history["meta"]["before"])
