"""What `do` tells before it starts: the sandbox, uncommitted changes the agent cannot see, and a
missing API key (refused before anything runs). Through the real CLI."""

from __future__ import annotations

import pytest

from cli_helpers import run_cli, write_script
from conftest import git


@pytest.fixture
def script(tmp_path):
    return write_script(tmp_path / "s.json", ["<finish>nothing to do</finish>"])


def _do(repo, script, *args):
    out = run_cli("do", "look around", "--model", f"scripted:{script}", "--no-tests", "--no-apply", *args, cwd=repo)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def test_do_says_the_sandbox_is_off_with_mode_none(git_repo, script):
    assert "sandbox: off (mode none)" in _do(git_repo, script, "--sandbox", "none")


def test_do_says_the_sandbox_is_on_and_whether_network_is_allowed(git_repo, script):
    from learnagent.sandbox import bwrap_available

    if not bwrap_available():
        pytest.skip("bubblewrap is not usable here")
    assert "sandbox: on (bubblewrap; no network)" in _do(git_repo, script)
    assert "sandbox: on (bubblewrap; network allowed)" in _do(git_repo, script, "--allow-network")


def test_do_says_uncommitted_changes_are_invisible_to_the_agent(git_repo, script):
    clean = _do(git_repo, script, "--sandbox", "none")
    assert "uncommitted" not in clean
    (git_repo / "calc.py").write_text("def add(a, b):\n    return a + b  # mine\n")
    (git_repo / "notes.txt").write_text("todo\n")
    out = _do(git_repo, script, "--sandbox", "none")
    head = git(git_repo, "rev-parse", "HEAD").strip()
    assert "your uncommitted changes (calc.py, notes.txt) are invisible to the agent" in " ".join(out.split())
    assert head[:10] in out


def test_missing_api_key_is_refused_before_the_run(git_repo, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    branches = git(git_repo, "branch", "--list")
    out = run_cli("do", "x", "--model", "litellm:anthropic/claude-sonnet-4-5", "--no-tests", cwd=git_repo)
    err = out.stderr.strip()
    assert out.returncode == 2 and "Traceback" not in out.stderr and err.splitlines() == [err]
    assert "ANTHROPIC_API_KEY" in err and "nothing was run" in err
    assert "step 1" not in out.stdout and git(git_repo, "branch", "--list") == branches
    assert "No episodes" in run_cli("log", cwd=git_repo).stdout
    init = run_cli("init", "--no-hooks", "--model", "litellm:anthropic/claude-sonnet-4-5", cwd=git_repo,
                   env={"COLUMNS": "200"})
    assert init.returncode == 0 and "needs ANTHROPIC_API_KEY" in init.stdout  # a warning: it may be set later


@pytest.mark.parametrize("spec,message", [("scripted:/no/such/script.json", "scripted model file not found"),
                                          ("nosuch:thing", "unknown model 'nosuch:thing'")])
def test_a_bad_model_spec_fails_before_anything_is_said_or_made(git_repo, spec, message):
    """Bad input: one line on stderr, exit 2, and no half-started run on stdout before it."""
    out = run_cli("do", "x", "--model", spec, cwd=git_repo)
    err = out.stderr.strip()
    assert out.returncode == 2 and err.splitlines() == [err] and message in err, err
    assert out.stdout == "" and git(git_repo, "branch", "--list", "learnagent/*") == ""
