"""Episode ids that clash (issue 14), on SQLite and on a real PostgreSQL server.

A random id drawn twice (1 in 16M per second, but a team's store sees every laptop's runs) must give
the episode a fresh id without losing the other writes of the transaction it was made in. On
PostgreSQL a duplicate key fails the whole transaction, so the store must never meet one and carry
on: these tests would fail there with the old catch-and-retry (every later statement refused).
The id generator is patched to draw the taken id first; the database is real.
"""

from __future__ import annotations

import pytest

from conftest import git
from learnagent.core.repository import Repository
from learnagent.store import episodes as episodes_mod
from learnagent.store.db import INTEGRITY_ERRORS
from learnagent.store.episodes import Store
from repo_helpers import folder_repository

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL

TAKEN = "261130120000aaaaaa"
FRESH = "261130120000bbbbbb"


def _draws(monkeypatch, *ids: str) -> list[str]:
    """Make new_episode_id hand out `ids` in order; returns the list of those handed out."""
    queue, drawn = list(ids), []

    def draw() -> str:
        drawn.append(queue.pop(0))
        return drawn[-1]

    monkeypatch.setattr(episodes_mod, "new_episode_id", draw)
    return drawn


def test_a_drawn_id_that_is_taken_is_drawn_again_inside_a_transaction(tmp_path, monkeypatch):
    with Store() as store:
        rid = store.ensure_repo(folder_repository(tmp_path))
        store.create_episode(rid, "someone else's run", episode_id=TAKEN)
        drawn = _draws(monkeypatch, TAKEN, FRESH)
        with store.transaction():
            store.add_message(TAKEN, 0, "user", "written before the clash")
            eid = store.create_episode(rid, "my run")
            store.add_message(eid, 0, "user", "written after the clash")
        assert (eid, drawn) == (FRESH, [TAKEN, FRESH])
    with Store() as store:  # committed: a new connection sees every write of the transaction
        mine, theirs = store.get_episode(FRESH), store.get_episode(TAKEN)
        assert (mine.task, [m.content for m in mine.messages]) == ("my run", ["written after the clash"])
        assert (theirs.task, [m.content for m in theirs.messages]) == ("someone else's run",
                                                                       ["written before the clash"])


def test_a_proposed_id_that_is_taken_gives_way_and_a_given_one_is_an_error(tmp_path, monkeypatch):
    with Store() as store:
        rid = store.ensure_repo(folder_repository(tmp_path))
        store.create_episode(rid, "first", episode_id=TAKEN)
        _draws(monkeypatch, FRESH)
        with store.transaction():
            store.set_recording(rid, True)
            assert store.create_episode(rid, "proposed", episode_id=TAKEN, redraw=True) == FRESH
        assert store.recording_enabled(rid) and store.find_episode(FRESH).task == "proposed"
        # a caller-given id (history import derives its own) stays the caller's to make unique
        with pytest.raises(INTEGRITY_ERRORS):
            store.create_episode(rid, "again", episode_id=TAKEN)
        assert store.find_episode(TAKEN).task == "first"


def test_no_free_id_is_a_one_line_error_not_a_loop(tmp_path, monkeypatch):
    from learnagent.core.errors import StoreError

    with Store() as store:
        rid = store.ensure_repo(folder_repository(tmp_path))
        store.create_episode(rid, "first", episode_id=TAKEN)
        _draws(monkeypatch, *[TAKEN] * episodes_mod.ID_DRAWS)
        with pytest.raises(StoreError, match="no free episode id after 5 draws"):
            store.create_episode(rid, "never")
        assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 1


def test_do_takes_the_id_the_store_gives_and_interrupting_leaves_the_other_run_alone(git_repo, monkeypatch):
    """`do` proposes its id before the run; when another run (here: another repository in the same
    store) has it, the episode, its folder and its branch all take the fresh one, the caller is told,
    and the clean-up after Ctrl-C never touches the other run's row."""
    from learnagent.agent import run as runner
    from learnagent.agent import worktree as wt
    from learnagent.agent.models.scripted import ScriptedModel
    from learnagent.core.config import Config

    other = git_repo.parent / "other"
    other.mkdir()
    with Store() as store:
        store.create_episode(store.ensure_repo(folder_repository(other)), "the other repository's run",
                             episode_id=TAKEN)
        _draws(monkeypatch, FRESH)
        cfg = Config()
        cfg.sandbox.mode = "none"
        told: list[str] = []
        repo = wt.find_repo(git_repo)
        result = runner.run_episode(repo, "say done", cfg, ScriptedModel(["<finish>done</finish>"]), store,
                                    run_tests=False, episode_id=TAKEN, on_episode_id=told.append)
        assert (result.episode_id, told) == (FRESH, [FRESH])
        mine = store.get_episode(FRESH)
        assert (mine.task, mine.branch, mine.status) == ("say done", "learnagent/" + FRESH, "finished")
        assert mine.worktree == str(Repository.at(git_repo).worktrees_dir / FRESH)
        assert git(git_repo, "branch", "--list", "learnagent/*").split() == ["learnagent/" + FRESH]

        runner.interrupted(store, repo.repository, TAKEN, "interrupted (Ctrl-C or SIGTERM)")
        theirs = store.find_episode(TAKEN)
        assert (theirs.status, theirs.task) == ("running", "the other repository's run")
        runner.interrupted(store, repo.repository, FRESH, "interrupted (Ctrl-C or SIGTERM)")
        assert store.find_episode(FRESH).status == "interrupted"
        assert git(git_repo, "branch", "--list", "learnagent/*").strip() == ""


def test_a_commit_another_import_recorded_meanwhile_is_skipped_not_a_failed_transaction(git_repo, monkeypatch):
    from learnagent.store.history import import_history

    (git_repo / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    git(git_repo, "commit", "-qam", "swap operands")
    repo = Repository.at(git_repo)
    with Store() as store:
        first = import_history(store, repo)
        assert len(first.imported) == 1
        # a second import that read the imported commits before the first one committed
        monkeypatch.setattr(Store, "imported_commits", lambda self, repo_id: set())
        second = import_history(store, repo)
        assert (second.imported, second.skipped) == ([], {"already imported": 1, "root commit": 1})
        assert store.count_episodes(repo.key, source="history") == 1
