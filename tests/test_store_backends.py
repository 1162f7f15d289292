"""The store on either database (issue 14): where it is, how an old store upgrades, who recorded an
episode, and bad store addresses. Real SQLite files and a real PostgreSQL server (tests/pg_server.py)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from cli_helpers import run_cli
from conftest import git
from legacy_store import make_legacy_store
from learnagent.core import home
from learnagent.core.config import load_config
from learnagent.core.errors import UsageError
from learnagent.store.db import head_version
from learnagent.store.episodes import Store
from learnagent.core.repository import Repository
from repo_helpers import folder_repository


def _columns(store) -> dict[str, set[str]]:
    """table -> its column names, read from the database's own catalogue."""
    if store.dialect == "sqlite":
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r["name"] for r in store.conn.execute(f"PRAGMA table_info('{t}')")} for t in tables}
    out: dict[str, set[str]] = {}
    for r in store.conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                                " WHERE table_schema = 'public'"):
        out.setdefault(r[0], set()).add(r[1])
    return out


def test_a_store_made_before_alembic_upgrades_with_every_row_kept(git_repo, tmp_path):
    """A user's store as the previous release wrote it (user_version 6, the .sql migrations) gains the
    new revisions on first open; every row is still there and its schema matches a new store's."""
    path = home.db_path()
    db = make_legacy_store(path, upto=6)
    db.execute("INSERT INTO repos VALUES ('r1', '/src/app', 'app', 1.5)")
    db.execute("INSERT INTO episodes(id, repo_id, task, status, outcome, final_diff, started_at, ended_at, meta)"
               " VALUES ('e1', 'r1', 'fix it', 'finished', 'accepted', 'diff --git', 1700000000.123456, 1700000001.5,"
               " '{\"k\": 1}')")
    db.execute("INSERT INTO messages VALUES ('e1', 0, 0, 'user', 'hello', 3, 2.0)")
    db.execute("INSERT INTO model_calls(episode_id, step, n_prompt_messages, prompt_tokens, completion_tokens,"
               " duration_s, created_at, engine) VALUES ('e1', 0, 1, 10, 5, 0.5, 2.0, 'transformers')")
    db.execute("INSERT INTO tool_calls(episode_id, step, name, args, result, ok, duration_s, created_at)"
               " VALUES ('e1', 0, 'run', '{}', 'ok', 1, 0.1, 2.0)")
    db.execute("INSERT INTO test_runs(episode_id, phase, command, exit_code, output_tail, duration_s, created_at)"
               " VALUES ('e1', 'final', 'pytest', 0, 'passed', 1.0, 3.0)")
    db.execute("INSERT INTO adapters(repo_id, version, path, method, base_model, created_at, status)"
               " VALUES ('r1', 'v0001', '/a/v0001', 'opsd', 'tiny', 4.0, 'promoted')")
    db.execute("INSERT INTO adapter_episodes VALUES ('r1', 'v0001', 'e1')")
    db.execute("INSERT INTO outcome_events(episode_id, kind, commit_sha, detail, created_at)"
               " VALUES ('e1', 'match', 'abc', '{}', 5.0)")
    db.execute("INSERT INTO processed_commits VALUES ('r1', 'abc', 5.0)")
    db.execute("INSERT INTO forgotten_episodes VALUES ('h', 'r1', NULL, 6.0)")
    db.execute("INSERT INTO recording VALUES ('r1', 0, 6.0)")
    before = {t: sorted(tuple(r) for r in db.execute(f"SELECT * FROM {t}")) for t in
              ("repos", "messages", "model_calls", "tool_calls", "test_runs", "adapters", "adapter_episodes",
               "outcome_events", "processed_commits", "forgotten_episodes", "recording")}
    episode_before = dict(db.execute("SELECT * FROM episodes").fetchone())
    db.close()

    with Store() as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == head_version()
        assert [tuple(r) for r in store.conn.execute("SELECT version_num FROM alembic_version")] == \
            [(f"{head_version():04d}",)]
        for table, rows in before.items():
            assert sorted(tuple(r) for r in store.conn.execute(f"SELECT * FROM {table}")) == rows, table
        episode = dict(store.conn.execute("SELECT * FROM episodes").fetchone())
        assert episode == episode_before | {"author": None, "machine": None, "seq": 1}  # 0009: its order
        assert store.find_episode("e1").started_at == 1700000000.123456
        assert not store.recording_enabled("r1")
        upgraded = _columns(store)
    fresh_path = tmp_path / "fresh.db"
    with Store(fresh_path) as fresh:
        assert _columns(fresh) == upgraded  # one schema, however the store got there
    with Store() as again:  # opening an up-to-date store changes nothing
        assert again.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 1


def test_a_new_postgresql_store_has_the_same_tables_and_columns(pg_url, tmp_path):
    with Store(tmp_path / "s.db") as lite, Store(pg_url) as pg:
        assert pg.dialect == "postgresql"
        lite_cols = _columns(lite)
        assert _columns(pg) == lite_cols
        # times keep their microseconds on the server (double precision, not float4)
        rid = pg.ensure_repo(folder_repository(tmp_path))
        eid = pg.create_episode(rid, "t", started_at=1764500000.654321)
        assert pg.find_episode(eid).started_at == 1764500000.654321


@pytest.mark.usefixtures("store_db")
def test_every_episode_records_its_author_and_machine(git_repo):
    git(git_repo, "config", "user.email", "dev@example.com")
    with Store() as store:
        rid = store.ensure_repo(Repository.at(git_repo))
        eid = store.create_episode(rid, "a task")
        ep = store.find_episode(eid)
        assert (ep.author, ep.machine) == ("dev@example.com", socket.gethostname())
        other = store.create_episode(rid, "imported", author="someone@else.org", machine="ci-7")
        assert (store.find_episode(other).author, store.find_episode(other).machine) == ("someone@else.org", "ci-7")


@pytest.mark.usefixtures("store_db")
def test_history_import_records_the_commit_author(git_repo):
    (git_repo / "b.py").write_text("b = 2\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "add b", "--author", "Writer <writer@example.com>")
    out = run_cli("history", "import", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    with Store() as store:
        authors = {e.task.splitlines()[0]: e.author for e in store.episodes_by_id(store.episode_ids())}
    assert authors["add b"] == "writer@example.com"


def _wrong_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"))


def test_bad_store_addresses_fail_in_one_line_without_a_traceback(git_repo, pg_cluster, pg_url):
    cases = [
        (_wrong_password(pg_url), 1, "password authentication failed"),
        (f"postgresql://learnagent:pw@127.0.0.1:{pg_cluster.port + 1 if pg_cluster.port < 65535 else 1}/x", 1,
         "cannot open the store"),
        (pg_url.rsplit("/", 1)[0] + "/no_such_database", 1, "does not exist"),
        ("mysql://root:pw@127.0.0.1/learnagent", 2, "unsupported store 'mysql://...'"),
    ]
    for url, code, words in cases:
        out = run_cli("log", cwd=git_repo, env={"LEARNAGENT_DB": url})
        assert out.returncode == code, (url, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.stderr
        assert "Traceback" not in out.stderr
        assert pg_cluster.password not in out.stderr and ":pw@" not in out.stderr  # no password in messages


def test_the_user_config_chooses_the_store_and_a_repository_config_may_not(git_repo, pg_url, tmp_path):
    config = tmp_path / "user.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n')
    env = {"LEARNAGENT_CONFIG": str(config)}
    assert run_cli("logs", "off", cwd=git_repo, env=env).returncode == 0
    with Store(pg_url) as pg:
        assert pg.conn.execute("SELECT COUNT(*) FROM recording WHERE enabled = 0").fetchone()[0] == 1
    assert not home.db_path().exists()  # nothing went to the local file

    (git_repo / ".learnagent").mkdir()
    (git_repo / ".learnagent" / "config.toml").write_text('[store]\nurl = "postgresql://evil@203.0.113.9/x"\n')
    # the store is never taken from a repository's config: its [store] is refused where configs are
    # read, and the store still is the user's own (here: the default file)
    with pytest.raises(UsageError, match="may only be set in your own config"):
        load_config(git_repo)
    assert run_cli("logs", "off", cwd=git_repo).returncode == 0
    with Store() as local:
        assert local.dialect == "sqlite" and local.path == home.db_path()
        assert not local.recording_enabled(local.ensure_repo(Repository.at(git_repo)))


def test_a_postgresql_transaction_holds_the_write_lock_like_sqlite(pg_url, tmp_path):
    """Store.transaction() on PostgreSQL: a second writer waits for the first (a read-then-write inside
    stays atomic), while plain reads go on."""
    from learnagent.core.errors import StoreError

    first, second = Store(pg_url), Store(pg_url)
    rid = first.ensure_repo(folder_repository(tmp_path))
    second.conn.execute("SET lock_timeout = '300ms'")
    with first.transaction():
        first.mark_commit_processed(rid, "abc")
        assert second.count_episodes(rid) == 0  # reading is not blocked
        with pytest.raises(StoreError, match="lock timeout"):
            with second.transaction():
                pass
    with second.transaction():  # free again once the first committed
        assert second.commit_processed(rid, "abc")
    first.close(), second.close()


def test_statements_written_for_sqlite_read_the_same_on_postgresql(pg_url, tmp_path):
    """store/pg.py's translation: `?` placeholders, a literal `%` with and without parameters, rows by
    name and position, a duplicate key as the error the store catches, SUM as a plain number."""
    from learnagent.store.db import INTEGRITY_ERRORS

    with Store(pg_url) as pg:
        rid = pg.ensure_repo(folder_repository(tmp_path))
        pg.create_episode(rid, "100% done", episode_id="e1")
        pg.create_episode(rid, "half", episode_id="e2")
        row = pg.conn.execute("SELECT id, task FROM episodes WHERE task LIKE '100%'").fetchone()
        assert (row[0], row["task"], dict(row)) == ("e1", "100% done", {"id": "e1", "task": "100% done"})
        assert [r["id"] for r in pg.conn.execute("SELECT id FROM episodes WHERE task LIKE ? AND id != '%'",
                                                 ("%done",))] == ["e1"]
        with pytest.raises(INTEGRITY_ERRORS):
            pg.create_episode(rid, "again", episode_id="e1")
        pg.add_model_call("e1", 0, 1, None, 7, 3, 0.5)
        total = pg.conn.execute("SELECT SUM(prompt_tokens) FROM episodes").fetchone()[0]
        assert total == 7 and isinstance(total, (int, float))


def test_a_git_hook_with_an_unreachable_team_store_never_fails_the_commit(git_repo, learnagent_home):
    out = run_cli("hook", "post-commit", cwd=git_repo, env={"LEARNAGENT_DB": "postgresql://me:pw@127.0.0.1:1/x"})
    assert out.returncode == 0 and out.stderr == ""
    log = (learnagent_home / "hooks.log").read_text()
    assert "cannot open the store postgresql://me:***@127.0.0.1:1/x" in log and ":pw@" not in log
