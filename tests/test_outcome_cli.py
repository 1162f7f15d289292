"""The outcome commands through the real CLI app: hooks, accept/reject, status, survival."""

import json

import pytest
from outcome_helpers import episode, events, git, old, propose, write
from typer.testing import CliRunner

from learnagent.cli.app import app
from learnagent.store.episodes import Store
from learnagent.store.outcomes import load_settings
from learnagent.store.survival import survival
from learnagent.core.repository import Repository

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL

SUB = {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"}


@pytest.fixture
def cli(git_repo, monkeypatch):
    monkeypatch.chdir(git_repo)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    return run


def test_hooks_commands(cli, git_repo):
    assert "post-commit: installed" in cli("hooks", "install")
    assert "post-rewrite  installed" in cli("hooks", "status")
    assert "post-commit: removed" in cli("hooks", "uninstall")
    assert "not installed" in cli("hooks", "status")
    assert not (git_repo / ".git" / "hooks" / "post-commit").exists()


def test_explicit_verdicts_win_over_attribution(cli, git_repo):
    cli("hooks", "install")
    with Store() as store:
        eid, _ = propose(store, git_repo, SUB)
        other, _ = propose(store, git_repo, {"notes.md": "# notes about the calculator\n"})
    assert f"episode {eid}: rejected" in cli("reject", eid[:-2], "--reason", "wrong approach")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "commit it anyway")
    with Store() as store:
        ep = episode(store, eid)
        assert ep["outcome"] == "rejected" and ep["outcome_reason"] == "wrong approach"
        assert ep["meta"]["verdict_by"] == "user"
        assert episode(store, other)["outcome"] == "accepted"
    cli("accept", other)
    with Store() as store:
        assert episode(store, other)["meta"]["verdict_by"] == "user"
        assert json.loads(events(store, other, "verdict")[-1]["detail"])["by"] == "user"


def test_unknown_episode_is_a_one_line_error(cli):
    with Store():
        pass
    result = CliRunner().invoke(app, ["accept", "nope"])
    assert result.exit_code != 0 and "no episode 'nope'" in str(result.exception)


def test_status_rates_by_week_and_model(cli, git_repo):
    with Store() as store:
        rid = store.ensure_repo(Repository.at(git_repo))

        def ep(outcome, days_ago, model="m1", adapter=None, passed=None):
            eid = store.create_episode(rid, "t", model=model, adapter_version=adapter, started_at=old(days_ago))
            store.finish_episode(eid, "finished", final_diff="")
            store.set_outcome(eid, outcome)
            if passed is not None:
                store.add_test_run(eid, "final", "pytest", 0 if passed else 1, "", 1.0)
            return eid

        ep("accepted", 15, passed=True)
        ep("rejected", 15, passed=False)
        ep("edited", 1, adapter="v0001", passed=True)
        ep("accepted", 1, adapter="v0001", passed=True)
        ep("pending", 0, adapter="v0001")
        hist = store.create_episode(rid, "old commit", source="history", started_at=old(100))
        store.set_outcome(hist, "accepted")
    data = json.loads(cli("status", "--json"))
    t = data["totals"]
    assert t["episodes"] == 5 and t["decided"] == 4 and t["acceptance"] == 0.75
    assert t["test_pass"] == 0.75 and t["outcomes"]["pending"] == 1
    assert data["weeks"][0]["acceptance"] == 0.5 and sum(w["episodes"] for w in data["weeks"]) == 5
    assert {w["acceptance"] for w in data["weeks"][1:]} - {None} == {1.0}
    by = {(m["model"], m["adapter"]): m for m in data["by_model"]}
    assert by[("m1", "base")]["acceptance"] == 0.5 and by[("m1", "v0001")]["acceptance"] == 1.0
    text = cli("status")
    assert "by week" in text and "by model / adapter" in text and "trend" in text
    assert any(bar in text for bar in "▁▂▃▄▅▆▇█")


def test_survival_counts_lines_still_present_n_commits_later(cli, git_repo):
    cli("hooks", "install")
    with Store() as store:
        eid, _ = propose(store, git_repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n"
                                                      "    return a - b\n\n\ndef neg(a):\n    return -a\n"})
        git(git_repo, "commit", "-qam", "sub and neg")
        assert episode(store, eid)["outcome"] == "accepted"
        write(git_repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"})
        git(git_repo, "commit", "-qam", "drop neg")  # 2 of the 4 committed lines go
        for i in range(2):
            write(git_repo, {f"f{i}.txt": "x\n"})
            git(git_repo, "add", "-A")
            git(git_repo, "commit", "-qm", f"filler {i}")
        ep = store.find_episode(eid)
        s = survival(store, git_repo, ep, n=2)
        assert s["final"] and s["present"] == 2 and s["total"] == 4 and s["rate"] == 0.5
        assert s["at"] == git(git_repo, "rev-parse", "HEAD~1").strip()  # 2 commits after the one that carried it
        provisional = survival(store, git_repo, ep, n=20)
        assert not provisional["final"] and provisional["commits_after"] == 3
        assert load_settings(git_repo).survival_commits == 20
    data = json.loads(cli("status", "--json"))
    assert data["totals"]["survival_measured"] == 1 and data["totals"]["survival"] == 0.5


def test_hidden_hook_command_never_fails(cli, git_repo, learnagent_home, store_db):
    if store_db != "sqlite":
        pytest.skip("breaks the SQLite file; an unreachable PostgreSQL store: tests/test_store_backends.py")
    with Store() as store:
        propose(store, git_repo, SUB)
    (learnagent_home / "learnagent.db").write_bytes(b"not a database" * 100)
    for extra in ("-wal", "-shm"):
        (learnagent_home / f"learnagent.db{extra}").unlink(missing_ok=True)
    cli("hook", "post-commit")  # exit code 0 is asserted by `cli`
    assert "StoreError" in (learnagent_home / "hooks.log").read_text()
