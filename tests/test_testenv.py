"""Which Python the tests run with: the project's own environment (real venvs made with
`python -m venv`), never silently learnagent's; and the agent's worktree is the code under test."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core.errors import UsageError
from learnagent.core.repository import Repository
from learnagent.core.testenv import resolve_test_env, uses_python, worktree_pythonpath
from learnagent.sandbox.policy import project_env as sandbox_env
from learnagent.sandbox.runner import bwrap_available

OUR_SITE = sysconfig.get_paths()["purelib"]  # where pytest is installed for this test run


def make_venv(folder: Path, *, editable: Path | None = None, with_pytest: bool = False) -> Path:
    """A real virtual environment (no pip: offline). `with_pytest` lets it import the packages of
    this test run's environment (pytest) through a .pth line; `editable` adds a path line as
    `pip install -e .` does for a src layout."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(folder.glob("lib/python3*/site-packages"))
    if with_pytest:
        (site / "zz_test_deps.pth").write_text(OUR_SITE + "\n")
    if editable is not None:
        (site / "__editable__.mylib-0.1.pth").write_text(str(editable) + "\n")
    return folder


def test_command_kinds():
    assert uses_python("python -m pytest -q") and uses_python("pytest -x") and uses_python("/x/.venv/bin/python3.12 -m pytest")
    assert not uses_python("npm test") and not uses_python("cargo test") and not uses_python("")


def test_no_environment_of_the_project_warns_about_learnagents_own(tmp_path, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    env = resolve_test_env(tmp_path)
    assert env.own and env.bin_dir is None and env.source == "learnagent's own environment"
    assert "learnagent's own environment" in env.warning and "python -m venv .venv" in env.warning
    (tmp_path / "uv.lock").write_text("")
    assert "uv sync" in resolve_test_env(tmp_path).warning
    assert sandbox_env(env, tmp_path, tmp_path / "wt") == {}  # the sandbox's PATH stays as it was


@pytest.mark.parametrize("name", [".venv", "venv"])
def test_the_projects_venv_is_preferred(tmp_path, name, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    make_venv(tmp_path / name)
    (tmp_path / "tox.ini").write_text("[tox]\n")
    make_venv(tmp_path / ".tox" / "py311")
    env = resolve_test_env(tmp_path)
    assert env.python == tmp_path / name / "bin" / "python" and not env.own and env.warning is None
    assert env.source == f"the project's {name}" and str(env.python) in env.describe()
    assert "Python 3." in env.describe()
    extra = sandbox_env(env, tmp_path, tmp_path / "wt")
    assert extra["PATH"].split(":")[0] == str(tmp_path / name / "bin")
    assert extra["VIRTUAL_ENV"] == str(tmp_path / name)
    assert not any(".venv" in p and str(tmp_path) not in p for p in extra["PATH"].split(":"))  # not learnagent's


def test_tox_nox_and_the_active_venv(tmp_path, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    (tmp_path / "tox.ini").write_text("[tox]\n")
    make_venv(tmp_path / ".tox" / "py311")
    env = resolve_test_env(tmp_path)
    assert env.python == tmp_path / ".tox" / "py311" / "bin" / "python" and "tox" in env.source
    (tmp_path / "tox.ini").unlink()
    (tmp_path / "noxfile.py").write_text("")
    make_venv(tmp_path / ".nox" / "tests")
    assert resolve_test_env(tmp_path).python == tmp_path / ".nox" / "tests" / "bin" / "python"
    (tmp_path / "noxfile.py").unlink()
    other = make_venv(tmp_path / "elsewhere")
    monkeypatch.setenv("VIRTUAL_ENV", str(other))
    env = resolve_test_env(tmp_path)
    assert env.python == other / "bin" / "python" and "VIRTUAL_ENV" in env.source


def test_configured_python(tmp_path):
    venv = make_venv(tmp_path / "envs" / "p")
    assert resolve_test_env(tmp_path, str(venv)).python == venv / "bin" / "python"
    assert resolve_test_env(tmp_path, str(venv / "bin" / "python")).python == venv / "bin" / "python"
    with pytest.raises(UsageError, match=r"\[test\] python"):
        resolve_test_env(tmp_path, str(tmp_path / "missing"))


def test_editable_installs_are_mapped_into_the_worktree(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src" / "mylib").mkdir(parents=True)
    (repo / "src" / "mylib" / "__init__.py").write_text("")
    venv = make_venv(repo / ".venv", editable=repo / "src")
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "__editable___other_finder.py").write_text(  # as setuptools writes it
        f"MAPPING: dict[str, str] = {{'other': {str(repo / 'lib' / 'other')!r}, 'outside': '/usr/lib/outside',"
        f" 'other.sub': {str(repo / 'lib' / 'other' / 'sub')!r}, 'renamed': {str(repo / 'pkgs' / 'core')!r}}}\n")
    env = resolve_test_env(repo)
    wt = tmp_path / "wt"
    # the .pth path, then `other`'s import root; `renamed` lives in a folder of another name, and
    # its parent (pkgs/) on the path would only expose unrelated top-level names
    assert worktree_pythonpath(env, repo, wt) == [str(wt / "src"), str(wt / "lib")]


def _project(git_repo: Path) -> Path:
    """A src-layout library whose test fails until the agent changes VERSION, with its own .venv
    holding an editable install that points at the user's checkout (as `pip install -e .` does)."""
    (git_repo / "src" / "mylib").mkdir(parents=True)
    (git_repo / "src" / "mylib" / "__init__.py").write_text('VERSION = "old"\n')
    (git_repo / "tests").mkdir()
    venv = git_repo / ".venv"
    (git_repo / "tests" / "test_version.py").write_text(
        "import sys\nfrom pathlib import Path\n\nimport mylib\n\n\n"
        "def test_the_projects_python_runs_the_tests():\n"
        f"    assert Path(sys.prefix).resolve() == Path({str(venv.resolve())!r})\n\n\n"
        "def test_version():\n    assert mylib.VERSION == \"new\"\n")
    (git_repo / ".gitignore").write_text(".venv/\n")
    (git_repo / "test_calc.py").unlink()
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "mylib")
    make_venv(venv, editable=git_repo / "src", with_pytest=True)
    return git_repo


SANDBOXES = ["none"] + (["require"] if bwrap_available() else [])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_do_runs_the_tests_with_the_projects_python_on_the_agents_code(git_repo, tmp_path, sandbox):
    repo = _project(git_repo)
    init = run_cli("init", "--no-hooks", cwd=repo)
    assert init.returncode == 0, init.stderr
    assert "python -m pytest -q" in init.stdout and str(repo / ".venv" / "bin" / "python") in init.stdout
    assert "warning" not in init.stderr
    script = write_script(tmp_path / "s.json", [
        "<edit path=\"src/mylib/__init__.py\">\n<<<<<<< SEARCH\nVERSION = \"old\"\n=======\n"
        "VERSION = \"new\"\n>>>>>>> REPLACE\n</edit>",
        "<finish>Bumped the version.</finish>"])
    out = run_cli("do", "make test_version pass", "--model", f"scripted:{script}", "--no-apply", "--json",
                  "--sandbox", sandbox, cwd=repo)
    assert "the project's .venv" in out.stderr  # --json: the progress goes to stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and result["tests_passed"] is True, out.stdout + out.stderr
    ep = json.loads(run_cli("show", result["episode"], "--json", cwd=repo).stdout)
    assert str(repo / ".venv" / "bin" / "python") in ep["meta"]["test_env"]


def test_init_warns_when_the_tests_would_use_learnagents_environment(git_repo, monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    out = run_cli("init", "--no-hooks", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert "learnagent's own environment" in out.stdout
    warning = [ln for ln in out.stderr.splitlines() if "warning" in ln]
    assert warning and "learnagent's own environment" in out.stderr and "set [test] python" in out.stderr


@pytest.mark.skipif(not bwrap_available(), reason="needs bubblewrap")
def test_the_projects_venv_shows_in_the_hidden_repository_but_nothing_else_of_it(git_repo):
    """The sandbox hides the user's repository (sec-git); the project's `.venv` inside it is bound
    again read-only so its tests can run, and nothing else of the repository shows. An
    "environment" that is the repository itself (or holds it) is never bound again."""
    from sandbox_helpers import make_worktree

    from learnagent.agent.worktree import user_repository_paths
    from learnagent.sandbox.runner import Sandbox

    venv = make_venv(git_repo / ".venv")
    (git_repo / ".env").write_text("SECRET=hunter2\n")
    worktree = make_worktree(git_repo)
    probe = f"{venv}/bin/python -c 'print(42)'; ls -A {git_repo}; cat {git_repo}/.env; touch {venv}/planted"
    with Sandbox(worktree, mode="require", hide=user_repository_paths(Repository.at(git_repo)), interpreters=[venv]) as sb:
        res = sb.run(probe)
    lines = res.output.splitlines()
    assert lines[:2] == ["42", ".venv"], res.output  # the venv runs; the repository shows only it
    assert "hunter2" not in res.output and "Read-only file system" in res.output
    assert not (venv / "planted").exists()
    with Sandbox(worktree, mode="require", hide=user_repository_paths(Repository.at(git_repo)), interpreters=[git_repo]) as sb:
        res = sb.run(f"ls -A {git_repo}; cat {git_repo}/.env")
    assert "hunter2" not in res.output and ".git" not in res.output, res.output
