"""Nightly schedule against a fake `crontab` (a real executable that keeps the table in a file)."""

import os
import stat
import subprocess

import pytest

from learnagent.core.repository import Repository
from learnagent.core.errors import UsageError
from learnagent.learning import schedule

FAKE_CRONTAB = """#!/bin/sh
# minimal crontab(1): -l prints the table, - replaces it from stdin
TABLE="$FAKE_CRON_TABLE"
case "$1" in
  -l) if [ -f "$TABLE" ]; then cat "$TABLE"; else echo "no crontab for $USER" >&2; exit 1; fi ;;
  -) cat > "$TABLE" ;;
  *) echo "usage: crontab -l | crontab -" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def fake_cron(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "crontab"
    exe.write_text(FAKE_CRONTAB)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    table = tmp_path / "crontab.txt"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CRON_TABLE", str(table))
    return table


def test_install_is_idempotent_and_keeps_other_entries(fake_cron, git_repo):
    fake_cron.write_text("0 1 * * * /usr/bin/backup # mine\n")
    assert schedule.detect_backend() == "cron"
    first = schedule.install(Repository.at(git_repo), "02:30")
    assert first.action == "installed"
    lines = fake_cron.read_text().splitlines()
    assert lines[0] == "0 1 * * * /usr/bin/backup # mine"
    ours = lines[1]
    assert ours.startswith("30 2 * * * cd ")
    assert str(git_repo.resolve()) in ours and " sleep >> " in ours
    assert ours.endswith(f"# learnagent-sleep:{Repository.at(git_repo).key}")
    exe = ours.split("&& ")[1].split(" sleep")[0].strip("'")
    assert os.path.isabs(exe) and os.access(exe, os.X_OK)
    assert schedule.install(Repository.at(git_repo), "02:30").action == "unchanged"
    assert fake_cron.read_text().splitlines() == lines
    assert schedule.install(Repository.at(git_repo), "04:05").action == "updated"
    lines = fake_cron.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("5 4 * * * ")


def test_uninstall_removes_exactly_ours(fake_cron, git_repo, tmp_path):
    other_repo = tmp_path / "other"
    other_repo.mkdir()
    subprocess.run(["git", "init", "-q", str(other_repo)], check=True)
    schedule.install(Repository.at(git_repo))
    schedule.install(Repository.at(other_repo))
    table = fake_cron.read_text()
    assert table.count("learnagent-sleep:") == 2 and "0 3 * * * " in table
    assert schedule.uninstall(Repository.at(git_repo)).action == "removed"
    left = fake_cron.read_text()
    assert Repository.at(git_repo).key not in left and Repository.at(other_repo).key in left
    assert schedule.uninstall(Repository.at(git_repo)).action == "absent"
    assert fake_cron.read_text() == left


def test_install_into_empty_table(fake_cron, git_repo):
    assert not fake_cron.exists()  # `crontab -l` fails with "no crontab": treated as empty
    assert schedule.install(Repository.at(git_repo)).action == "installed"
    assert len(fake_cron.read_text().splitlines()) == 1


@pytest.mark.parametrize("bad", ["25:00", "3", "03:60", "noon", "3:5"])
def test_bad_time_is_refused_before_touching_the_table(fake_cron, git_repo, bad):
    with pytest.raises(UsageError, match="HH:MM"):
        schedule.install(Repository.at(git_repo), bad)
    assert not fake_cron.exists()
