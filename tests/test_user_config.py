"""The per-user config (the default model everywhere): defaults < user config < repository config <
command line, through the real CLI."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli, write_script


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    """XDG_CONFIG_HOME/learnagent/config.toml, as a user would write it (LEARNAGENT_CONFIG unset)."""
    monkeypatch.delenv("LEARNAGENT_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "xdg" / "learnagent" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def _script(tmp_path, name: str):
    return write_script(tmp_path / f"{name}.json", [f"<finish>{name} was here</finish>"])


def _model_of_run(repo, *args: str) -> str:
    out = run_cli("do", "say who you are", "--no-tests", "--sandbox", "none", "--json", *args, cwd=repo)
    assert out.returncode == 0, out.stderr + out.stdout
    episode = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    return json.loads(run_cli("show", episode, "--json", cwd=repo).stdout)["model"]  # scripted:FILE-NAME


def test_user_config_sets_the_model_until_the_repository_or_the_command_line_says_otherwise(
        git_repo, tmp_path, user_config):
    mine, repos, flag = (_script(tmp_path, n) for n in ("mine", "repos", "flag"))
    user_config.write_text(f'[model]\nname = "scripted:{mine}"\n[budgets]\nmax_steps = 7\n')
    assert _model_of_run(git_repo) == f"scripted:{mine.name}"  # a repository never initialised
    init = run_cli("init", "--no-hooks", cwd=git_repo, env={"COLUMNS": "200"})
    assert init.returncode == 0, init.stderr
    assert f"scripted:{mine} (from {user_config})" in init.stdout and "7 steps" in init.stdout
    assert _model_of_run(git_repo) == f"scripted:{mine.name}"  # init wrote no model of its own over it
    repo_file = (git_repo / ".learnagent" / "config.toml").read_text()
    assert '# name = "smollm2"' in repo_file and 'command = "python -m pytest -q"' in repo_file
    assert run_cli("init", "--no-hooks", "--model", f"scripted:{repos}", cwd=git_repo).returncode == 0
    assert _model_of_run(git_repo) == f"scripted:{repos.name}"  # the repository's config wins over the user's
    assert _model_of_run(git_repo, "--model", f"scripted:{flag}") == f"scripted:{flag.name}"  # the command line over both
    assert "7 steps" in run_cli("init", "--no-hooks", cwd=git_repo, env={"COLUMNS": "200"}).stdout  # still the user's


def test_learnagent_config_points_at_another_file(git_repo, tmp_path, monkeypatch):
    elsewhere = tmp_path / "team.toml"
    script = _script(tmp_path, "team")
    elsewhere.write_text(f'[model]\nname = "scripted:{script}"\n')
    monkeypatch.setenv("LEARNAGENT_CONFIG", str(elsewhere))
    assert _model_of_run(git_repo) == f"scripted:{script.name}"


@pytest.mark.parametrize("text,message", [("[model\n", "not valid TOML"), ("[model]\ncolour = 1\n", "unknown setting"),
                                          ("[budgets]\nmax_steps = \"many\"\n", "whole number")])
def test_a_bad_user_config_is_one_line_naming_the_file(git_repo, user_config, text, message):
    user_config.write_text(text)
    out = run_cli("do", "x", "--no-tests", cwd=git_repo)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert str(user_config) in out.stderr and message in out.stderr
