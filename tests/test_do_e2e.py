"""End-to-end `learnagent do` on temporary git repositories with the scripted model."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cli_helpers import run_cli, run_cli_tty, write_script
from conftest import git
from learnagent.core import home
from learnagent.core.repository import Repository

EDIT_SCRIPT = [
    "Read the code first.\n<read path=\"calc.py\"/>",
    "Add the new function.\n<edit path=\"calc.py\">\n<<<<<<< SEARCH\ndef add(a, b):\n    return a + b\n=======\n"
    "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n>>>>>>> REPLACE\n</edit>",
    "And a test.\n<write path=\"test_mul.py\">\nfrom calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n</write>",
    "<test/>",
    "<finish>Added mul() with a test.</finish>",
]


def _status(repo):
    return git(repo, "status", "--porcelain", "--untracked-files=all")


def _db():
    return sqlite3.connect(home.db_path())


@pytest.fixture
def script(tmp_path):
    return write_script(tmp_path / "script.json", EDIT_SCRIPT)


def test_do_accept_applies_and_records_everything(git_repo, script):
    out = run_cli("do", "add a mul function", "--model", f"scripted:{script}", "--yes", "--json",
                  "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["verdict"] == "accept" and result["tests_passed"] is True
    assert sorted(result["changed_files"]) == ["calc.py", "test_mul.py"]
    # applied to the user's working tree, not committed, index untouched
    assert "def mul(a, b)" in (git_repo / "calc.py").read_text()
    assert (git_repo / "test_mul.py").exists()
    assert git(git_repo, "diff", "--cached").strip() == ""
    assert git(git_repo, "log", "--oneline").count("\n") == 1
    # worktree and branch cleaned up after accept
    assert "learnagent/" not in git(git_repo, "branch", "--list")
    # the episode, whole
    show = run_cli("show", result["episode"], "--json", cwd=git_repo)
    ep = json.loads(show.stdout)
    assert ep["task"] == "add a mul function" and ep["status"] == "finished"
    assert ep["base_commit"] == git(git_repo, "rev-parse", "HEAD").strip()
    assert ep["branch"] == f"learnagent/{ep['id']}" and ep["model"].startswith("scripted:")
    assert ep["meta"]["applied"] is True
    assert [c["name"] for c in ep["tool_calls"]] == ["read", "edit", "write", "test", "finish"]
    assert all(c["ok"] for c in ep["tool_calls"])
    assert len(ep["model_calls"]) == 5 and all(c["prompt_tokens"] > 0 for c in ep["model_calls"])
    assert {(c["engine"], c["adapter_version"]) for c in ep["model_calls"]} == {("scripted", None)}
    assert [m["role"] for m in ep["messages"][:3]] == ["system", "user", "assistant"]
    assert [t["phase"] for t in ep["test_runs"]] == ["agent", "final"]
    assert all(t["exit_code"] == 0 for t in ep["test_runs"])
    assert "+def mul(a, b):" in ep["final_diff"] and "test_mul.py" in ep["final_diff"]
    assert ep["summary"] == "Added mul() with a test."
    # log lists it
    log = json.loads(run_cli("log", "--json", cwd=git_repo).stdout)
    assert [e["id"] for e in log] == [ep["id"]] and log[0]["tests"] == "pass"


def test_no_terminal_keeps_branch_and_tree_untouched(git_repo, script):
    before = {p.name: p.read_bytes() for p in git_repo.iterdir() if p.is_file()}
    out = run_cli("do", "add mul", "--model", f"scripted:{script}", "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert "keeping the branch" in out.stdout
    assert {p.name: p.read_bytes() for p in git_repo.iterdir() if p.is_file()} == before
    assert _status(git_repo) == ""
    with _db() as db:
        eid, outcome = db.execute("SELECT id, outcome FROM episodes").fetchone()
    assert outcome == "kept"
    assert f"learnagent/{eid}" in git(git_repo, "branch", "--list")


def test_interactive_reject_leaves_everything_as_it_was(git_repo, script):
    before = {p.name: p.read_bytes() for p in git_repo.iterdir() if p.is_file()}
    branches = git(git_repo, "branch", "--list")
    code, screen = run_cli_tty(["do", "add mul", "--model", f"scripted:{script}", "--sandbox", "none"],
                               cwd=git_repo, answer="r\n")
    assert code == 0, screen
    assert "Apply to your working tree?" in screen and "Rejected" in screen
    assert {p.name: p.read_bytes() for p in git_repo.iterdir() if p.is_file()} == before
    assert _status(git_repo) == "" and git(git_repo, "branch", "--list") == branches
    assert not any(Repository.at(git_repo).worktrees_dir.iterdir())
    with _db() as db:
        assert db.execute("SELECT outcome FROM episodes").fetchone()[0] == "rejected"


def test_dirty_tree_is_preserved_and_merged(git_repo, script):
    (git_repo / "calc.py").write_text("# my local note\n\n\ndef add(a, b):\n    return a + b\n")
    (git_repo / "scratch.txt").write_text("uncommitted work\n")
    git(git_repo, "add", "scratch.txt")  # staged, too
    index_before = git(git_repo, "diff", "--cached")
    out = run_cli("do", "add mul", "--model", f"scripted:{script}", "--yes", "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr + out.stdout
    calc = (git_repo / "calc.py").read_text()
    assert "# my local note" in calc and "def mul(a, b)" in calc  # both changes survive (3-way merge)
    assert (git_repo / "scratch.txt").read_text() == "uncommitted work\n"
    assert git(git_repo, "diff", "--cached") == index_before


def test_conflict_refuses_and_changes_nothing(git_repo, script):
    mine = "def add(a, b):\n    return a + b  # mine\n\n\ndef mul(x, y):\n    return x * y\n"
    (git_repo / "calc.py").write_text(mine)
    out = run_cli("do", "add mul", "--model", f"scripted:{script}", "--yes", "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 4
    assert "conflict" in out.stdout and "calc.py" in out.stdout
    assert (git_repo / "calc.py").read_text() == mine
    assert not (git_repo / "test_mul.py").exists()
    with _db() as db:
        eid, outcome = db.execute("SELECT id, outcome FROM episodes").fetchone()
    assert outcome == "kept"
    # once the user's edit is gone, the kept branch applies
    git(git_repo, "checkout", "calc.py")
    applied = run_cli("apply", eid[:8], cwd=git_repo)
    assert applied.returncode == 0, applied.stderr
    assert "def mul(a, b)" in (git_repo / "calc.py").read_text()


def test_worktree_is_outside_and_user_tree_untouched_during_run(git_repo, tmp_path):
    probe = write_script(tmp_path / "probe.json", [
        "<run>pwd; git status --porcelain; git branch --show-current</run>",
        "<write path=\"calc.py\">\ndef add(a, b):\n    return 0\n</write>",
        "<finish>broke it on purpose</finish>",
    ])
    out = run_cli("do", "probe", "--model", f"scripted:{probe}", "--no-apply", "--json", "--sandbox", "none",
                  cwd=git_repo)
    assert out.returncode == 1  # final tests fail
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    ep = json.loads(run_cli("show", eid, "--json", cwd=git_repo).stdout)
    pwd_out = ep["tool_calls"][0]["result"]
    assert str(Repository.at(git_repo).worktrees_dir) in pwd_out and f"learnagent/{eid}" in pwd_out
    assert ep["test_runs"][-1]["exit_code"] != 0
    assert (git_repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert _status(git_repo) == ""


def test_model_format_errors_are_shown_to_the_model(git_repo, tmp_path):
    bad = write_script(tmp_path / "bad.json", [
        "I will just talk without an action.",
        "<edit path=\"calc.py\">\n<<<<<<< SEARCH\nnot in the file\n=======\nx\n>>>>>>> REPLACE\n</edit>",
        "<read path=\"../../etc/passwd\"/>",
        "<finish>gave up</finish>",
    ])
    out = run_cli("do", "try things", "--model", f"scripted:{bad}", "--no-apply", "--json", "--sandbox", "none",
                  cwd=git_repo)
    assert out.returncode == 0, out.stderr
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    ep = json.loads(run_cli("show", eid, "--json", cwd=git_repo).stdout)
    calls = ep["tool_calls"]
    assert [c["name"] for c in calls] == ["format", "edit", "read", "finish"]
    assert not calls[0]["ok"] and "no action found" in calls[0]["result"]
    assert not calls[1]["ok"] and "does not match" in calls[1]["result"]
    assert not calls[2]["ok"] and "outside" in calls[2]["result"]
    # the model saw each error as its next user message
    user_msgs = [m["content"] for m in ep["messages"] if m["role"] == "user"][1:]
    assert "no action found" in user_msgs[0] and "does not match" in user_msgs[1]


def test_step_budget_ends_run_with_nonzero_exit(git_repo, tmp_path):
    looping = write_script(tmp_path / "loop.json", ["<list path=\".\"/>"] * 10)
    out = run_cli("do", "loop", "--model", f"scripted:{looping}", "--max-steps", "3", "--yes", "--json",
                  "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 3
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "budget_exceeded" and res["steps"] == 3


@pytest.mark.parametrize("setup,args,message,code", [
    ("nogit", ["do", "x"], "not a git repository", 2),
    ("empty", ["do", "x"], "no commits", 2),
    ("detached", ["do", "x"], "detached", 2),
    ("ok", ["do", "   "], "task is empty", 2),
    ("ok", ["do", "x", "--model", "nonsense-model"], "unknown model", 2),
    ("ok", ["do", "x", "--model", "scripted:/nope.json"], "not found", 2),
    ("notests", ["do", "x", "--model", "scripted:demo"], "no test command found", 2),
    ("ok", ["do", "x", "--model", "local:/nonexistent/folder"], "no model folder", 2),
    ("nomodel", ["do", "x"], "default model is not installed", 2),
    ("ok", ["init", "--model", "nonsense-model"], "unknown model", 2),
    ("ok", ["sleep", "--model", "scripted:demo"], "sleep trains a local model", 2),
    ("ok", ["show", "zzzz"], "no episode", 2),  # bad input (README), as every unknown id
    ("ok", ["do", "x", "--yes", "--no-apply"], "contradict", 2),
])
def test_bad_input_one_line_error(tmp_path, git_repo, setup, args, message, code, monkeypatch):
    cwd = git_repo
    if setup == "nomodel":
        monkeypatch.setenv("LEARNAGENT_CACHE", str(tmp_path / "empty-cache"))
    if setup == "nogit":
        cwd = tmp_path / "plain"
        cwd.mkdir()
    elif setup == "empty":
        cwd = tmp_path / "empty"
        cwd.mkdir()
        git(cwd, "init", "-q")
    elif setup == "detached":
        git(git_repo, "checkout", "-q", "--detach")
    elif setup == "notests":
        cwd = tmp_path / "notests"
        cwd.mkdir()
        git(cwd, "init", "-q")
        (cwd / "README").write_text("hi\n")
        git(cwd, "add", ".")
        git(cwd, "commit", "-q", "-m", "c")
    before = _status(cwd) if setup not in ("nogit",) else None
    out = run_cli(*args, cwd=cwd)
    err = out.stderr.strip()
    assert out.returncode == code, err  # 2: bad input (README, exit codes)
    assert message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in out.stderr
    if before is not None:
        assert _status(cwd) == before


def test_init_writes_config_and_hides_it(git_repo):
    out = run_cli("init", "--no-hooks", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    cfg = (git_repo / ".learnagent" / "config.toml").read_text()
    assert 'command = "python -m pytest -q"' in cfg
    assert _status(git_repo) == ""


def test_scripted_demo_is_shipped(git_repo):
    out = run_cli("do", "demo", "--model", "scripted:demo", "--yes", "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr + out.stdout
    assert (git_repo / "LEARNAGENT_DEMO.md").exists()


def test_do_runs_agent_commands_in_the_sandbox(git_repo, tmp_path):
    from learnagent.sandbox import bwrap_available

    if not bwrap_available():
        pytest.skip("bubblewrap is not usable here")
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')"
    probe = write_script(tmp_path / "net.json", [f"<run>python -c \"{connect}\" 2>&1 | tail -n 1</run>",
                                                 "<finish>probed</finish>"])
    try:
        out = run_cli("do", "probe network", "--model", f"scripted:{probe}", "--no-apply", "--json", cwd=git_repo)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    ep = json.loads(run_cli("show", eid, "--json", cwd=git_repo).stdout)
    assert ep["meta"]["sandbox"] == "bwrap"
    result = ep["tool_calls"][0]["result"]
    assert "CONNECTED" not in result and "Error" in result  # the host's loopback server is out of reach
    assert [t["exit_code"] for t in ep["test_runs"]] == [0]  # the tests themselves run fine inside


def test_worked_example_goes_before_the_task_when_on(git_repo, script):
    """`[model] examples = "on"`: the model sees one finished example task (tools' real result
    formats) between the system prompt and the task; it is recorded like any prompt message."""
    from learnagent.agent.prompts import worked_example

    (git_repo / ".learnagent").mkdir()
    (git_repo / ".learnagent" / "config.toml").write_text('[model]\nexamples = "on"\n[test]\ncommand = "true"\n')
    out = run_cli("do", "add a mul function", "--model", f"scripted:{script}", "--no-apply", "--json",
                  "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr + out.stdout
    ep = json.loads(run_cli("show", json.loads(out.stdout.strip().splitlines()[-1])["episode"], "--json",
                            cwd=git_repo).stdout)
    example = worked_example("true")
    messages = [(m["role"], m["content"]) for m in ep["messages"]]
    assert messages[1: 1 + len(example)] == [(m["role"], m["content"]) for m in example]
    assert messages[1 + len(example)][0] == "user" and "add a mul function" in messages[1 + len(example)][1]
    assert ep["model_calls"][0]["n_prompt_messages"] == len(example) + 2
    assert "<test/>" in example[5]["content"] and "$ true" in example[6]["content"]
    assert not any("<test/>" in m["content"] for m in worked_example(""))  # no test command: not shown


def test_bad_examples_setting_is_a_one_line_error_before_any_work(git_repo, script):
    (git_repo / ".learnagent").mkdir()
    (git_repo / ".learnagent" / "config.toml").write_text('[model]\nexamples = "sometimes"\n')
    out = run_cli("do", "add a mul function", "--model", f"scripted:{script}", "--no-apply", cwd=git_repo)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "examples = 'sometimes'" in out.stderr
    assert "learnagent/" not in git(git_repo, "branch", "--list")


def test_example_mode_auto_is_on_for_local_models_only():
    from learnagent.agent.prompts import use_example

    assert use_example("auto", "local:smollm2-135m-instruct")
    assert not use_example("auto", "litellm:openai/gpt-4o") and not use_example("auto", "scripted:demo")
    assert use_example("on", "litellm:openai/gpt-4o") and not use_example("off", "local:x")
