"""Usage errors, --version, help texts and shell completion, through the real CLI in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from learnagent.core.repository import Repository


def test_version_prints_it_and_exits_0(tmp_path):
    from learnagent import __version__

    out = run_cli("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"learnagent {__version__}" and out.stderr == ""


@pytest.mark.parametrize("args,message", [
    (["log", "--jsn"], "No such option: --jsn"),
    (["show"], "Missing argument 'ID'"),
    (["log", "-n", "abc"], "Invalid value for '--limit'"),
    (["log", "-n", "0"], "Invalid value for '--limit'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["do"], "Missing argument 'TASK'"),
    (["do", "x", "--max-steps", "many"], "Invalid value for '--max-steps'"),
    (["history", "import", "--max", "-3"], "Invalid value for '--max'"),
    (["sleep", "--max-minutes", "soon"], "Invalid value for '--max-minutes'"),
    (["adapters", "use"], "Missing argument 'VERSION'"),
    (["model", "install", "--wheel"], "Option '--wheel' requires an argument"),
    (["forget", "--since"], "Option '--since' requires an argument"),
])
def test_usage_errors_are_one_line_exit_2_without_traceback(tmp_path, args, message):
    out = run_cli(*args, cwd=tmp_path)
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    command = " ".join(a for a in args if not a.startswith("-") and a not in ("abc", "0", "-3", "many", "soon", "x"))
    if args[0] != "nosuchcommand" and "requires an argument" not in message:  # click knows no command there
        assert f"see learnagent {command} --help" in err, err


def test_no_command_shows_the_help(tmp_path):
    out = run_cli(cwd=tmp_path)
    assert "Traceback" not in out.stderr
    assert "Usage: learnagent" in out.stdout + out.stderr and "do" in out.stdout + out.stderr


def _all_commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            yield from _all_commands(sub, path + (name,))


def test_help_names_what_each_option_expects(tmp_path):
    """No `<bool>`/`<str>`/`<int range>` type tags: flags show nothing, options a metavar (SPEC, N, DATE)."""
    from learnagent.cli.app import build_command

    commands = list(_all_commands(build_command()))
    assert len(commands) > 20
    for path, _command in commands:
        out = run_cli(*path, "--help", cwd=tmp_path, env={"COLUMNS": "120"})
        assert out.returncode == 0, out.stderr
        tags = re.findall(r"<(?:bool|str|int|float|path|text|list)[^>]*>", out.stdout, re.I)
        assert not tags, f"learnagent {' '.join(path)} --help shows {tags}"
    do_help = run_cli("do", "--help", cwd=tmp_path, env={"COLUMNS": "120"}).stdout
    assert re.search(r"--model\s+-m\s+SPEC", do_help) and re.search(r"--max-steps\s+N\b", do_help)
    assert re.search(r"--sandbox\s+auto\|require\|none", do_help)
    assert re.search(r"--since\s+DATE", run_cli("forget", "--help", cwd=tmp_path, env={"COLUMNS": "120"}).stdout)


def test_bash_completion_is_offered_and_completes_commands_and_options(tmp_path):
    script = run_cli("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0 and "_LEARNAGENT_COMPLETE" in script.stdout, script.stderr
    learnagent = Path(sys.executable).parent / "learnagent"
    if not learnagent.exists():
        pytest.skip("the learnagent console script is not installed in this venv")
    (tmp_path / "completion.sh").write_text(script.stdout)
    env = dict(os.environ, PATH=f"{learnagent.parent}{os.pathsep}{os.environ['PATH']}")

    def complete(*words: str) -> list[str]:
        words_array = " ".join(f"'{w}'" for w in ("learnagent", *words))
        bash = (f"source {tmp_path / 'completion.sh'}; COMP_WORDS=({words_array}); COMP_CWORD={len(words)}; "
                "_learnagent_completion learnagent; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", bash], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert {"log", "logs"} <= set(complete("lo"))
    assert "--json" in complete("log", "--")
    # --install-completion writes the script under HOME and sources it from .bashrc (offline)
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli("--install-completion", "bash", cwd=tmp_path, env={"HOME": str(home), "SHELL": "/bin/bash"})
    assert out.returncode == 0, out.stderr
    assert "learnagent" in (home / ".bashrc").read_text()
    assert "_LEARNAGENT_COMPLETE" in (home / ".bash_completions" / "learnagent.sh").read_text()


@pytest.mark.parametrize("command", [["show"], ["show", "--json"], ["apply"], ["accept"], ["reject"], ["forget"]])
def test_an_unknown_or_ambiguous_episode_id_is_bad_input(git_repo, command):
    """README: every command reports bad input as one line on stderr and exit 2; an id that names
    no episode, or more than one, is bad input (it was exit 1)."""
    from learnagent.store.episodes import Store

    with Store() as store:
        repo_id = store.ensure_repo(Repository.at(git_repo))
        for eid in ("abc123-1", "abc123-2"):
            store.create_episode(repo_id, "a task", base_commit="0" * 40, branch="learnagent/" + eid,
                                 worktree="", model="scripted", episode_id=eid)
    for wrong, message in (("zzzz", "no episode 'zzzz'"), ("abc123", "is ambiguous")):
        out = run_cli(*command, wrong, cwd=git_repo)
        err = out.stderr.strip()
        assert out.returncode == 2, (command, out.returncode, err)
        assert "Traceback" not in out.stderr and out.stdout == ""
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
