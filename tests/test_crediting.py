"""Which episode a commit is credited to, through real `learnagent do` runs (scripted model), real
git and the installed hooks: a kept branch only by commits made from it, never by coincidence;
runs that changed nothing are out of the acceptance rate."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli, write_script
from outcome_helpers import git, head, write
from learnagent.core import home
from learnagent.core.githooks import install_hooks

MUL = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \"\"\"Multiply a by b.\"\"\"\n    return a * b\n"
TEST_MUL = "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
SCRIPT = [
    "<edit path=\"calc.py\">\n<<<<<<< SEARCH\ndef add(a, b):\n    return a + b\n=======\n"
    + MUL + ">>>>>>> REPLACE\n</edit>",
    f"<write path=\"test_mul.py\">\n{TEST_MUL}</write>",
    "<finish>Added mul() with a test.</finish>",
]


@pytest.fixture
def repo(git_repo, store_db):  # every crediting test on SQLite and on PostgreSQL (the hooks too)
    install_hooks(git_repo)
    return git_repo


def kept_episode(repo, tmp_path) -> str:
    """`learnagent do --no-apply`: the agent's work stays on its branch, nothing is applied."""
    script = write_script(tmp_path / "script.json", SCRIPT)
    out = run_cli("do", "add a mul function", "--model", f"scripted:{script}", "--no-apply", "--json",
                  "--sandbox", "none", cwd=repo)
    assert out.returncode == 0, out.stderr + out.stdout
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    assert outcome(eid) == "kept"
    return eid


def outcome(eid: str) -> str:
    from learnagent.store.episodes import Store

    with Store() as store:
        return store.find_episode(eid).outcome


def another_commit(repo):
    write(repo, {"README.md": "hello\n"})
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "readme")


def test_a_commit_that_only_equals_a_kept_branch_does_not_decide_it(repo, tmp_path):
    """The user wrote the same change by hand (or got it elsewhere): the kept episode stays kept,
    `apply` still works on it, and gc leaves its branch alone."""
    eid = kept_episode(repo, tmp_path)
    write(repo, {"calc.py": MUL, "test_mul.py": TEST_MUL})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "mul, written by hand")
    assert outcome(eid) == "kept"
    gc = run_cli("gc", "--dry-run", cwd=repo)
    assert gc.returncode == 0, gc.stderr
    assert eid not in gc.stdout
    out = run_cli("apply", eid, cwd=repo)
    assert out.returncode == 0, out.stderr


def test_a_cherry_pick_of_the_kept_branch_is_credited(repo, tmp_path):
    eid = kept_episode(repo, tmp_path)
    another_commit(repo)
    git(repo, "cherry-pick", f"learnagent/{eid}")
    assert outcome(eid) == "accepted"


def test_a_squash_merge_of_the_kept_branch_is_credited(repo, tmp_path):
    eid = kept_episode(repo, tmp_path)
    another_commit(repo)
    git(repo, "merge", "-q", "--squash", f"learnagent/{eid}")
    git(repo, "commit", "-q", "--no-edit")  # git's squash message names the squashed commit
    assert head(repo) and outcome(eid) == "accepted"


def test_a_merge_of_the_kept_branch_is_credited_also_after_the_branch_is_gone(repo, tmp_path):
    eid = kept_episode(repo, tmp_path)
    tip = git(repo, "rev-parse", f"learnagent/{eid}").strip()
    git(repo, "tag", "agent-work", tip)  # keep the commit reachable, drop the branch
    git(repo, "branch", "-D", f"learnagent/{eid}")
    another_commit(repo)
    git(repo, "merge", "-q", "--no-ff", "-m", "merge agent work", "agent-work")
    assert outcome(eid) == "accepted"  # the tip was recorded with the episode


def test_an_applied_episode_is_still_credited_by_its_lines(repo, tmp_path):
    eid = kept_episode(repo, tmp_path)
    assert run_cli("apply", eid, cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "mul")
    assert outcome(eid) == "accepted"


def test_a_run_that_changed_nothing_is_not_rejected_and_not_in_the_rate(repo, tmp_path):
    script = write_script(tmp_path / "noop.json", ["<finish>Nothing to do: it is already there.</finish>"])
    out = run_cli("do", "check add", "--model", f"scripted:{script}", "--yes", "--json", "--sandbox", "none",
                  cwd=repo)
    assert out.returncode == 0, out.stderr
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    assert outcome(eid) == "unchanged"
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    assert status["totals"]["decided"] == 0 and status["totals"]["acceptance"] is None
    assert status["totals"]["outcomes"] == {"unchanged": 1}


def test_migration_moves_old_no_change_rejections_out_of_the_rate():
    """A store written before `unchanged` existed: its no-change runs were 'rejected' ("no changes")."""
    from legacy_store import make_legacy_store
    from learnagent.store.episodes import Store

    db = make_legacy_store(home.db_path(), upto=4)
    db.execute("INSERT INTO repos VALUES ('r', '/r', 'r', 0)")
    rows = [("e1", "rejected", "no changes", ""), ("e2", "rejected", "rejected at review", "diff"),
            ("e3", "rejected", "no changes", "some diff")]
    for eid, out, reason, diff in rows:
        db.execute("INSERT INTO episodes(id, repo_id, task, outcome, outcome_reason, final_diff, started_at)"
                   " VALUES (?, 'r', 't', ?, ?, ?, 0)", (eid, out, reason, diff))
    db.close()
    with Store() as store:
        got = {r["id"]: r["outcome"] for r in store.conn.execute("SELECT id, outcome FROM episodes")}
    assert got == {"e1": "unchanged", "e2": "rejected", "e3": "rejected"}
