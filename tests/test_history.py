"""`learnagent history import` on a real repository: what becomes an episode, what is skipped."""

import pytest

from outcome_helpers import git, write

from learnagent.core.repository import Repository
from learnagent.store.episodes import Store

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL
from learnagent.store.history import import_history, skipped_path

FAKE_KEY = "AKIA" + "IOSFODNN7EXAMPLE"


def commit(repo, files, message, binary=None):
    write(repo, files)
    for rel, data in (binary or {}).items():
        (repo / rel).write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def test_import_turns_commits_into_accepted_episodes(git_repo):
    base = git(git_repo, "rev-parse", "HEAD").strip()
    good = commit(git_repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"},
                  "Add mul\n\nMultiplication, as asked.")
    commit(git_repo, {"node_modules/x/index.js": "module.exports = 1\n", "package-lock.json": "{}\n",
                      "dist/app.min.js": "var a=1\n"}, "vendored and generated only")
    commit(git_repo, {}, "a binary", binary={"logo.png": b"\x89PNG\r\n\x1a\n\0\0\0binary"})
    commit(git_repo, {"big.py": "".join(f"x{i} = {i}\n" for i in range(3000))}, "huge")
    git(git_repo, "checkout", "-qb", "side")
    commit(git_repo, {"side.py": "s = 1\n"}, "side work")
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    mixed = commit(git_repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return b * a\n",
                              "yarn.lock": "lock\n"}, f"Swap operands (key {FAKE_KEY})")

    with Store() as store:
        report = import_history(store, Repository.at(git_repo))
        assert report.skipped == {"root commit": 1, "no source files": 2, "diff too large": 1}
        assert len(report.imported) == 3  # mul, side work (the merge's parent), swap
        eps = {e.meta["commit"]: e for e in store.list_episodes()}
        ep = eps[good]
        assert ep.source == "history" and ep.outcome == "accepted" and ep.status == "finished"
        assert ep.task == "Add mul\n\nMultiplication, as asked." and ep.base_commit == base
        assert "+def mul(a, b):" in ep.final_diff
        assert ep.meta["before"] == {"calc.py": "def add(a, b):\n    return a + b\n"}
        swap = eps[mixed]
        assert "yarn.lock" not in swap.final_diff and swap.meta["files"] == ["calc.py"]
        assert FAKE_KEY not in swap.task  # scrubbed by the Store
        assert all(e.meta["commit"] != git(git_repo, "rev-parse", "HEAD~1").strip() for e in eps.values())

        again = import_history(store, Repository.at(git_repo))
        assert again.imported == [] and again.skipped["already imported"] == 3
        assert len(store.list_episodes()) == 3


def test_since_and_max_limit_the_import(git_repo):
    for i, year in enumerate((2020, 2021, 2024, 2025)):
        date = {"GIT_AUTHOR_DATE": f"{year}-06-01T12:00:00", "GIT_COMMITTER_DATE": f"{year}-06-01T12:00:00"}
        write(git_repo, {f"m{i}.py": f"value = {i}\n"})
        git(git_repo, "add", "-A")
        git(git_repo, "commit", "-qm", f"module {i}", env=date)
    with Store() as store:
        recent = import_history(store, Repository.at(git_repo), since="2023-01-01")
        assert sorted(store.get_episode(e).task for e in recent.imported) == ["module 2", "module 3"]
        assert recent.imported[0].startswith("250601")  # ids sort like the history (author date)
        first = import_history(store, Repository.at(git_repo), max_commits=1)
        assert [store.get_episode(e).task for e in first.imported] == ["module 1"]  # newest not yet imported
        assert len(import_history(store, Repository.at(git_repo), max_commits=10).imported) == 1


def test_skipped_paths():
    assert skipped_path("web/node_modules/a/b.js") and skipped_path("Cargo.lock") and skipped_path("a/b.min.js")
    assert not skipped_path("src/vendor.py") and not skipped_path("src/app.js")


def _old_style_id(repo_id, sha, authored_at, extra=0):
    """How ids were made before per-repository ids: author time + the commit's first 6 hex."""
    import time

    return time.strftime("%y%m%d%H%M%S", time.gmtime(authored_at)) + sha[:6]


def test_two_clones_of_one_repository_both_import(git_repo, tmp_path, monkeypatch):
    """A second clone is a second repository in the store: its import must not collide with the
    first clone's episodes. The first import here runs with the old id scheme, as a store made
    before per-repository ids has it; the old ids keep resolving."""
    from cli_helpers import run_cli

    import learnagent.store.history as history

    for i in range(3):
        commit(git_repo, {f"m{i}.py": f"value = {i}\n"}, f"module {i}")
    clone_a, clone_b = tmp_path / "a" / "proj", tmp_path / "b" / "proj"
    for clone in (clone_a, clone_b):
        clone.parent.mkdir()
        git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    with Store() as store, monkeypatch.context() as patch:
        patch.setattr(history, "history_episode_id", _old_style_id)
        old_ids = import_history(store, Repository.at(clone_a)).imported
    assert len(old_ids) == 3

    out_b = run_cli("history", "import", cwd=clone_b)
    assert out_b.returncode == 0, out_b.stderr
    assert "damaged" not in out_b.stdout + out_b.stderr
    out_a = run_cli("history", "import", cwd=clone_a)  # again in the first: nothing new, no error
    assert out_a.returncode == 0, out_a.stderr
    with Store() as store:
        rows = store.conn.execute("SELECT e.id, r.path FROM episodes e JOIN repos r ON r.id = e.repo_id").fetchall()
        by_clone = {}
        for r in rows:
            by_clone.setdefault(r["path"], []).append(r["id"])
        assert sorted(len(v) for v in by_clone.values()) == [3, 3]
        assert len({r["id"] for r in rows}) == 6
        assert all(store.resolve_id(eid) == eid for eid in old_ids)
        new_ids = by_clone[str(clone_b.resolve())]
        assert all(len(eid) == 18 for eid in new_ids)  # as short as before


def test_history_ids_are_stable_per_repository_and_lengthen_on_a_clash(git_repo):
    from learnagent.store.episodes import history_episode_id

    sha = git(git_repo, "rev-parse", "HEAD").strip()
    assert history_episode_id("repo1", sha, 0.0) == history_episode_id("repo1", sha, 0.0)
    assert history_episode_id("repo1", sha, 0.0) != history_episode_id("repo2", sha, 0.0)
    commit(git_repo, {"m.py": "v = 1\n"}, "module")
    with Store() as store:
        repo_id = store.ensure_repo(Repository.at(git_repo))
        info_sha = git(git_repo, "rev-parse", "HEAD").strip()
        from learnagent.store.gitutil import commit_info

        taken = history_episode_id(repo_id, info_sha, commit_info(git_repo, info_sha)["authored_at"])
        store.create_episode(repo_id, "an unrelated episode that got the same id", episode_id=taken)
        [eid] = import_history(store, Repository.at(git_repo)).imported
        assert eid != taken and eid.startswith(taken) and len(eid) == 20
