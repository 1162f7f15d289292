"""The layer contract (AGENTS.md "Layers", pyproject [tool.importlinter]) as CI checks it:
scripts/lint_imports.py passes on the tree, and fails on an upward import hidden in a function."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (scripts/setup.sh --dev)")


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "lint_imports.py")], cwd=root,
                          capture_output=True, text=True)


def test_the_layer_contract_holds():
    done = _check(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_inside_a_function_fails_the_check(tmp_path):
    """A copy of the sources where core imports the agent layer inside a function (the way the
    imports issue 13 removed were written)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "scripts" / "lint_imports.py", tmp_path / "scripts")
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    for folder in {f.split("/")[0] for f in folders}:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert _check(tmp_path).returncode == 0  # the copy itself is clean
    with open(tmp_path / "core" / "home.py", "a") as fh:
        fh.write("\n\ndef _sneaky():\n    from learnagent.agent import worktree\n\n    return worktree\n")
    done = _check(tmp_path)
    assert done.returncode == 1
    assert "learnagent.core is not allowed to import learnagent.agent" in done.stdout
    assert "learnagent.core.home -> learnagent.agent.worktree" in done.stdout
