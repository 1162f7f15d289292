"""`learnagent push`, `team join`, and forgetting on a team store, against a real PostgreSQL server
(tests/pg_server.py): what is sent, what never is, and that a second push sends nothing new."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cli_helpers import run_cli
from conftest import git
from learnagent.store.episodes import Store
from learnagent.core.repository import Repository

FAKE_KEY = "AKIA" + "IOSFODNN7EXAMPLE"


def _do_episode(store, repo, task, *, diff="diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n",
                status="finished", source="do"):
    rid = store.ensure_repo(Repository.at(repo))
    eid = store.create_episode(rid, task, source=source, branch="learnagent/x", worktree="/home/me/.wt/x")
    store.add_message(eid, 0, "user", f"{task}: please")
    store.add_tool_call(eid, 0, "read", {"path": "calc.py"}, "def add(a, b): ...", True, 0.1)
    store.add_tool_call(eid, 1, "read", {"path": ".env"}, "DB_PASSWORD=hunter2", True, 0.1)
    store.add_model_call(eid, 1, 2, 1, 100, 20, 0.5)
    store.add_test_run(eid, "final", "pytest", 0, "1 passed", 0.4)
    if status != "running":
        store.finish_episode(eid, status, final_diff=diff, summary="done")
    return eid


def _team_rows(url, sql, args=()):
    with Store(url) as team:
        return [tuple(r) for r in team.conn.execute(sql, args)]


def test_push_sends_opted_in_finished_episodes_once_with_ignored_content_withheld(git_repo, pg_url, tmp_path):
    git(git_repo, "remote", "add", "origin", "git@github.com:acme/calc.git")
    git(git_repo, "config", "user.email", "me@example.com")
    with Store() as store:
        sent = _do_episode(store, git_repo, "add mul")
        touches_env = _do_episode(store, git_repo, "set the password",
                                  diff="diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n+X=1\n")
        _do_episode(store, git_repo, "still running", status="running")
        _do_episode(store, git_repo, "an imported commit", source="history")
        # recorded by an older redactor that missed this key: the push scrubs it on the way
        store.conn.execute("UPDATE messages SET content = ? WHERE episode_id = ?", (f"key {FAKE_KEY}", sent))

    out = run_cli("push", "--to", pg_url, "--json", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sent"] == []  # nothing opted in yet
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM episodes") == [(0,)]

    out = run_cli("team", "join", cwd=git_repo)
    assert out.returncode == 0 and "github.com/acme/calc" in out.stdout, out.stderr
    out = run_cli("push", "--to", pg_url, "--json", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["sent"] == [sent] and result["withheld"] == [touches_env] and result["repos"] == ["github.com/acme/calc"]

    [(repo_id, author, machine, worktree, branch, outcome)] = _team_rows(
        pg_url, "SELECT repo_id, author, machine, worktree, branch, outcome FROM episodes")
    assert (repo_id, author, worktree, branch, outcome) == ("github.com/acme/calc", "me@example.com", None, None,
                                                            "pending")
    assert machine
    [(content,)] = _team_rows(pg_url, "SELECT content FROM messages WHERE episode_id = ?", (sent,))
    assert FAKE_KEY not in content and content.startswith("key ")
    results = dict(_team_rows(pg_url, "SELECT args, result FROM tool_calls WHERE episode_id = ? ORDER BY step", (sent,)))
    assert results[json.dumps({"path": "calc.py"})] == "def add(a, b): ..."
    assert "hunter2" not in results[json.dumps({"path": ".env"})]
    assert _team_rows(pg_url, "SELECT prompt_tokens, completion_tokens FROM model_calls") == [(100, 20)]
    assert _team_rows(pg_url, "SELECT command, exit_code FROM test_runs") == [("pytest", 0)]

    # a second push sends nothing; a changed outcome is sent as an update, once
    again = json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)
    assert again["sent"] == [] and again["updated"] == []
    with Store() as store:
        store.set_outcome(sent, "accepted", "committed")
    again = json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)
    assert again["sent"] == [] and again["updated"] == [sent]
    assert _team_rows(pg_url, "SELECT outcome FROM episodes WHERE id = ?", (sent,)) == [("accepted",)]
    assert json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)["updated"] == []

    # logs off: nothing more leaves the machine for that repository
    with Store() as store:
        later = _do_episode(store, git_repo, "after logs off")
    assert run_cli("logs", "off", cwd=git_repo).returncode == 0
    paused = json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)
    assert paused["sent"] == [] and paused["paused"] == ["github.com/acme/calc"]
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM episodes WHERE id = ?", (later,)) == [(0,)]


def test_push_never_counts_another_machines_episode_under_the_same_id_as_its_own(git_repo, pg_url):
    """Ids are the start second + 24 random bits, so two laptops can (once in 16.7 M same-second
    pairs) draw one id. The team store's row is then another machine's: the push does not write over
    it nor call it sent, and says so at every push; one whose local mark was lost counts as present."""
    from learnagent.store import team_rows

    git(git_repo, "config", "user.email", "me@example.com")
    with Store() as store:
        clashing, lost_mark = _do_episode(store, git_repo, "mine"), _do_episode(store, git_repo, "pushed before")
        [mine] = team_rows.episode_rows(store, lost_mark)["episodes"]
    assert run_cli("team", "join", "--name", "acme/calc", cwd=git_repo).returncode == 0
    with Store(pg_url) as team:
        team_rows.ensure_team_repo(team, "acme/calc")
        for eid, author, machine in ((clashing, "them@example.com", "their-laptop"),
                                     (lost_mark, mine["author"], mine["machine"])):  # pushed, its local mark lost
            team.conn.execute("INSERT INTO episodes(id, repo_id, task, started_at, author, machine) VALUES (?,?,?,?,?,?)",
                              (eid, "acme/calc", "theirs" if eid == clashing else "pushed before", 1.0, author, machine))

    first = json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)
    assert first["clashed"] == [clashing] and first["sent"] == [] and first["updated"] == [lost_mark]
    again = json.loads(run_cli("push", "--to", pg_url, "--json", cwd=git_repo).stdout)
    assert again["clashed"] == [clashing] and again["updated"] == []  # named again; the other one is marked now
    assert _team_rows(pg_url, "SELECT task, author FROM episodes WHERE id = ?", (clashing,)) == [("theirs", "them@example.com")]
    out = run_cli("push", "--to", pg_url, cwd=git_repo)
    assert out.returncode == 0 and "not pushed: 1 episode(s) whose id another machine's episode holds" in out.stderr, \
        out.stdout + out.stderr


def test_forget_removes_the_users_own_episodes_from_the_team_store(git_repo, pg_url, tmp_path):
    config = tmp_path / "user.toml"
    config.write_text(f'[team]\nurl = "{pg_url}"\n')
    env = {"LEARNAGENT_CONFIG": str(config)}
    git(git_repo, "config", "user.email", "me@example.com")
    with Store() as store:
        mine = _do_episode(store, git_repo, "mine")
    assert run_cli("team", "join", "--name", "acme/calc", cwd=git_repo, env=env).returncode == 0
    out = run_cli("push", cwd=git_repo, env=env)  # [team] url is the default --to
    assert out.returncode == 0 and "1 new episode" in out.stdout, out.stderr
    with Store(pg_url) as team:  # a colleague's episode (never touched) and an adapter trained on both
        team.conn.execute("INSERT INTO episodes(id, repo_id, task, started_at, author) VALUES (?,?,?,?,?)",
                          ("colleague1", "acme/calc", "theirs", 1.0, "them@example.com"))
        team.add_adapter("acme/calc", "v0001", path="/gpu/v0001", parent=None, method="opsd", base_model="b")
        team.add_adapter_episodes("acme/calc", "v0001", [mine, "colleague1"])
        # continued from v0001 on the colleague's episode alone: it carries what v0001 learnt from mine
        team.add_adapter("acme/calc", "v0002", path="/gpu/v0002", parent="v0001", method="opsd", base_model="b")
        team.add_adapter_episodes("acme/calc", "v0002", ["colleague1"])

    out = run_cli("forget", mine, "--yes", cwd=git_repo, env=env)
    assert out.returncode == 0 and "on the team store too" in out.stdout, out.stdout + out.stderr
    assert _team_rows(pg_url, "SELECT id FROM episodes ORDER BY id") == [("colleague1",)]
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM forgotten_episodes") == [(1,)]
    assert _team_rows(pg_url, "SELECT version, tainted FROM adapters ORDER BY version") == [("v0001", 1), ("v0002", 1)]
    assert _team_rows(pg_url, "SELECT episode_id FROM adapter_episodes") == [("colleague1",), ("colleague1",)]
    with Store() as store:
        assert not store.has_episode(mine)


def test_push_to_an_unreachable_team_store_is_one_line_and_keeps_everything(git_repo):
    with Store() as store:
        _do_episode(store, git_repo, "kept")
    assert run_cli("team", "join", "--name", "acme/calc", cwd=git_repo).returncode == 0
    out = run_cli("push", "--to", "postgresql://me:secret@127.0.0.1:1/team", cwd=git_repo)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot open the store" in out.stderr
    assert "secret" not in out.stderr and "Traceback" not in out.stderr
    out = run_cli("push", cwd=git_repo)
    assert out.returncode == 2 and "no team store" in out.stderr


def test_several_developers_pushing_at_once_lose_nothing(git_repo, pg_url, tmp_path):
    """Three laptops (their own data homes and clones of one repository) push at the same moment
    while the team store is read: every episode arrives once, under one repository."""
    homes = []
    for dev in range(3):
        clone = tmp_path / f"clone{dev}"
        git(tmp_path, "clone", "-q", str(git_repo), str(clone))
        git(clone, "remote", "set-url", "origin", "https://github.com/acme/calc.git")
        git(clone, "config", "user.email", f"dev{dev}@example.com")
        env = {"LEARNAGENT_HOME": str(tmp_path / f"home{dev}")}
        code = ("import sys\nfrom learnagent.store.episodes import Store\nfrom test_team_store import _do_episode\n"
                "with Store() as s:\n    for i in range(8):\n        _do_episode(s, sys.argv[1], f'task {i}')\n")
        subprocess.run([sys.executable, "-c", code, str(clone)], check=True,
                       env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).parent)})
        assert run_cli("team", "join", cwd=clone, env=env).returncode == 0
        homes.append((clone, env))

    def push(args):
        clone, env = args
        return run_cli("push", "--to", pg_url, "--json", cwd=clone, env=env, timeout=240)

    with ThreadPoolExecutor(4) as pool:
        reading = pool.submit(lambda: [_team_rows(pg_url, "SELECT COUNT(*) FROM episodes") for _ in range(20)])
        outs = list(pool.map(push, homes))
        reads = reading.result()
    for out in outs:
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["sent"]) == 8
    assert [c for (c,), in reads] == sorted(c for (c,), in reads)  # a reader sees the count only grow
    assert _team_rows(pg_url, "SELECT repo_id, author, COUNT(*) FROM episodes GROUP BY repo_id, author ORDER BY 2") == \
        [("github.com/acme/calc", f"dev{d}@example.com", 8) for d in range(3)]
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM messages") == [(24,)]
    assert _team_rows(pg_url, "SELECT COUNT(*) FROM repos") == [(1,)]
