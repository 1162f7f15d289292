"""`learnagent log` lists episodes that started in the same second in the order they were written
(newest first), on SQLite and on PostgreSQL: the start time, then `episodes.seq` (revision 0009),
never the ids' random or hashed tails."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from learnagent.core.repository import Repository
from learnagent.store.episodes import Store
from outcome_helpers import git, write

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL

SAME_SECOND = 1_790_000_000.0


def _logged(repo) -> list[str]:
    out = run_cli("log", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    return [e["id"] for e in json.loads(out.stdout)]


def test_episodes_of_the_same_second_list_newest_written_first(git_repo):
    # ids whose tails sort against the order they are written in, all at the same start time
    ids = ["291109093320ffffff", "291109093320aaaaaa", "291109093320cccccc", "291109093320000000"]
    with Store() as store:
        rid = store.ensure_repo(Repository.at(git_repo))
        for eid in ids:
            store.create_episode(rid, f"task {eid}", episode_id=eid, started_at=SAME_SECOND)
        store.create_episode(rid, "an earlier one", episode_id="291109093319ffffff", started_at=SAME_SECOND - 1)
        newest_first = [e.id for e in store.list_episodes(rid)]
    assert newest_first == [*reversed(ids), "291109093319ffffff"]
    assert _logged(git_repo) == newest_first  # the CLI the user runs, twice the same
    assert _logged(git_repo) == newest_first


def test_commits_of_the_same_second_import_in_history_order(git_repo):
    from learnagent.store.history import import_history

    same = {"GIT_AUTHOR_DATE": "2026-06-01T12:00:00", "GIT_COMMITTER_DATE": "2026-06-01T12:00:00"}
    for i in range(5):
        write(git_repo, {f"f{i}.py": f"x = {i}\n"})
        git(git_repo, "add", "-A")
        git(git_repo, "commit", "-qm", f"add f{i}", env=same)
    with Store() as store:
        report = import_history(store, Repository.at(git_repo))
        subjects = [e.summary for e in store.list_episodes(Repository.at(git_repo).key)]
    assert subjects == [f"add f{i}" for i in reversed(range(5))]  # as `git log` lists them
    assert len(report.imported) == 5
    assert [s for s in git(git_repo, "log", "--format=%s", "-5").splitlines()] == subjects


def test_a_team_store_orders_pushed_episodes_by_when_it_received_them(tmp_path):
    """The laptop's seq stays on the laptop: the team store (the store under test) numbers what it
    receives, so episodes of the same second from two laptops list in the order they arrived."""
    from learnagent.store import team_rows
    from repo_helpers import folder_repository

    with Store(tmp_path / "laptop.db") as laptop, Store() as team:
        rid = laptop.ensure_repo(folder_repository(tmp_path))
        for eid in ("291109093320aaaaaa", "291109093320bbbbbb"):
            laptop.finish_episode(laptop.create_episode(rid, "t", episode_id=eid, started_at=SAME_SECOND), "finished")
        team_rows.ensure_team_repo(team, "team/app")
        for eid in ("291109093320bbbbbb", "291109093320aaaaaa"):  # received in the other order
            rows = team_rows.episode_rows(laptop, eid)
            assert "seq" not in rows["episodes"][0]
            rows["episodes"][0]["repo_id"] = "team/app"
            with team.transaction():
                assert team_rows.insert_episode(team, rows) == "new"
        assert [e.id for e in team.list_episodes("team/app")] == ["291109093320aaaaaa", "291109093320bbbbbb"]


def test_episodes_recorded_before_revision_0009_get_their_order(store_db, tmp_path):
    """A store at revision 0008 with episodes of the same second: the upgrade numbers them (SQLite:
    the order they were written in, its rowid; PostgreSQL keeps none: start time, then id)."""
    import os

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.pool import NullPool

    from learnagent.store import db, pg

    url = os.environ["LEARNAGENT_DB"] if store_db == "postgresql" else str(tmp_path / "old.db")
    engine = sa.create_engine(pg.sqlalchemy_url(url) if store_db == "postgresql" else f"sqlite:///{url}",
                              poolclass=NullPool)
    cfg = Config()
    cfg.set_main_option("script_location", db.SCRIPT_LOCATION)
    cfg.attributes["lock_key"] = 1
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
    written = ["291109093320cccccc", "291109093320aaaaaa", "291109093320bbbbbb"]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO repos(id, path, name, created_at) VALUES ('r', '/r', 'r', 1.0)"))
        for eid in written:
            conn.execute(sa.text("INSERT INTO episodes(id, repo_id, task, started_at, meta) VALUES"
                                 " (:id, 'r', 't', :at, '{}')"), {"id": eid, "at": SAME_SECOND})
    engine.dispose()
    with Store(url) as store:
        seqs = {r["id"]: r["seq"] for r in store.conn.execute("SELECT id, seq FROM episodes")}
        newest_first = [e.id for e in store.list_episodes("r")]
        new = store.create_episode("r", "after the upgrade", started_at=SAME_SECOND)
        assert store.list_episodes("r")[0].id == new and store.find_episode(new) is not None
    expected = written if store_db == "sqlite" else sorted(written)  # oldest first
    assert [eid for eid, _ in sorted(seqs.items(), key=lambda kv: kv[1])] == expected
    assert sorted(seqs.values()) == [1, 2, 3] and newest_first == expected[::-1]
