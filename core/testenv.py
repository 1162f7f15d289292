"""Which Python environment a repository's tests run in, and the variables that make the agent's
worktree the code under test.

`python -m pytest` means whatever `python` comes first on PATH. In the sandbox that used to be the
environment learnagent itself runs from, which may hold another version of the project's own
packages (learnagent depends on click, rich, typer, ...) and lacks the project's test
dependencies: the tests then test the wrong code. So the environment is resolved, shown, and put
first on the sandbox's PATH. In order:

1. `[test] python` in the config when it is not "auto": a venv folder or an interpreter;
2. a virtual environment inside the repository: `.venv`, `venv`, `env` (what `uv sync`,
   `poetry install` with in-project venvs, and most people's `python -m venv` make);
3. the environment the project's tool keeps elsewhere: `poetry env info --path` (poetry.lock or
   [tool.poetry]), `hatch env find` ([tool.hatch] or hatch.toml), when the tool is installed;
4. an existing tox or nox environment (`.tox/<env>`, `.nox/<session>`);
5. the virtual environment active in the shell (VIRTUAL_ENV), unless it is learnagent's own;
6. otherwise learnagent's own environment, with a warning that says how to make the project's.

Tox, nox, hatch and `uv run` are not run as the test command: inside the sandbox (no network,
a fresh worktree without their environments) they would rebuild and install. Their existing
environment is used with `python -m pytest` instead.

An editable install of the project (a `.pth` path, or setuptools' editable finder) points into
the user's checkout, not into the agent's worktree; `worktree_pythonpath` maps those paths (and a
`src/` layout) into the worktree, so the tests import the agent's version of the code.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

IN_REPO_VENVS = (".venv", "venv", "env")
TOOL_TIMEOUT_S = 20
PYTHON_RUNNERS = {"python", "python3", "pytest", "py.test"}


@dataclass(frozen=True)
class TestEnv:
    """The environment the tests run in. `bin_dir` None: the sandbox's PATH is left as it is."""

    python: Path | None  # the interpreter; None when none was found at all
    bin_dir: Path | None  # first on the sandbox's PATH
    source: str  # where it came from, for people: "the project's .venv", "learnagent's own environment", ...
    own: bool  # True when it is the environment learnagent runs from
    warning: str | None = None

    @property
    def venv(self) -> Path | None:
        return self.bin_dir.parent if self.bin_dir is not None else None

    def describe(self) -> str:
        where = str(self.python) if self.python else "python on PATH"
        version = _venv_version(self.venv) if self.venv else None
        return f"{where} ({self.source}" + (f", Python {version})" if version else ")")


def uses_python(command: str) -> bool:
    """Whether the test command runs Python (so the environment matters)."""
    words = command.split()
    if not words:
        return False
    first = Path(words[0]).name
    return first in PYTHON_RUNNERS or bool(re.fullmatch(r"python3(\.\d+)?", first))


def learnagent_env() -> Path | None:
    """The virtual environment learnagent runs from (its bin is first on the sandbox's PATH), if any."""
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return Path(sys.prefix)
    env = os.environ.get("VIRTUAL_ENV")
    return Path(env) if env else None


def _venv_python(folder: Path) -> Path | None:
    python = folder / "bin" / "python"
    if (folder / "pyvenv.cfg").is_file() and os.access(python, os.X_OK):
        return python
    return None


def _venv_version(folder: Path) -> str | None:
    try:
        for line in (folder / "pyvenv.cfg").read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        pass
    return None


def _same(a: Path | None, b: Path | None) -> bool:
    try:
        return a is not None and b is not None and a.resolve() == b.resolve()
    except OSError:
        return False


def _from_venv(folder: Path, source: str, warning: str | None = None) -> TestEnv | None:
    python = _venv_python(folder)
    if python is None:
        return None
    return TestEnv(python, python.parent, source, _same(folder, learnagent_env()), warning)


def _pyproject_text(root: Path) -> str:
    try:
        return (root / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return ""


def _tool_env(root: Path, argv: list[str]) -> Path | None:
    """The environment folder a project tool reports (first line of its output), if it runs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                             stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return Path(line) if line and Path(line).is_dir() else None


def _newest_env(folder: Path) -> Path | None:
    """Of tox's or nox's environments, the most recently built one that is a usable venv."""
    if not folder.is_dir():
        return None
    envs = [p for p in folder.iterdir() if p.is_dir() and _venv_python(p) is not None]
    return max(envs, key=lambda p: p.stat().st_mtime, default=None)


def resolve_test_env(repo_root: Path, setting: str = "auto") -> TestEnv:
    """The environment the tests of `repo_root` run in (see the module docstring for the order)."""
    root = Path(repo_root)
    if setting and setting != "auto":
        return _configured(root, setting)
    for name in IN_REPO_VENVS:
        env = _from_venv(root / name, f"the project's {name}")
        if env is not None:
            return env
    pyproject = _pyproject_text(root)
    if (root / "poetry.lock").exists() or "[tool.poetry" in pyproject:
        folder = _tool_env(root, ["poetry", "env", "info", "--path"])
        if folder is not None and (env := _from_venv(folder, "poetry's environment")):
            return env
    if (root / "hatch.toml").exists() or "[tool.hatch" in pyproject:
        folder = _tool_env(root, ["hatch", "env", "find", "default"])
        if folder is not None and (env := _from_venv(folder, "hatch's default environment")):
            return env
    for tool, marker in (("tox", "tox.ini"), ("nox", "noxfile.py")):
        if (root / marker).exists() or (tool == "tox" and "[tool.tox" in pyproject):
            folder = _newest_env(root / f".{tool}")
            if folder is not None and (env := _from_venv(folder, f"{tool}'s {folder.name} environment")):
                return env
    active = os.environ.get("VIRTUAL_ENV")
    if active and not _same(Path(active), learnagent_env()):
        env = _from_venv(Path(active), "the active virtual environment (VIRTUAL_ENV)")
        if env is not None:
            return env
    return _fallback(root, pyproject)


def _configured(root: Path, setting: str) -> TestEnv:
    from learnagent.core.errors import UsageError

    path = Path(setting).expanduser()
    path = path if path.is_absolute() else root / path
    env = _from_venv(path, "[test] python") if path.is_dir() else None
    if env is None and path.is_file() and os.access(path, os.X_OK):
        env = TestEnv(path, path.parent, "[test] python", _same(path.parent.parent, learnagent_env()))
    if env is None:
        raise UsageError(f"[test] python = {setting!r}: not a virtual environment folder or a Python interpreter")
    return env


def _fallback(root: Path, pyproject: str) -> TestEnv:
    own = learnagent_env()
    if (root / "uv.lock").exists():
        make = "uv sync"
    elif (root / "poetry.lock").exists() or "[tool.poetry" in pyproject:
        make = "poetry install"
    else:
        make = "python -m venv .venv && .venv/bin/pip install -e . pytest"
    if own is not None:
        python = _venv_python(own) or Path(sys.executable)
        warning = (f"no environment of this project found: the tests would run with learnagent's own "
                   f"environment ({own}), which may hold other versions of the project's packages and "
                   f"lacks its test dependencies; create the project's ({make}) or set [test] python")
        return TestEnv(python, None, "learnagent's own environment", True, warning)
    python = shutil.which("python3") or shutil.which("python")
    warning = (f"no virtual environment of this project found: the tests run with the system's Python "
               f"({python or 'none on PATH'}); create the project's ({make}) or set [test] python")
    return TestEnv(Path(python) if python else None, None, "the system's Python", False, warning)


# ---------------------------------------------------------------- the worktree is the code under test

def _site_packages(python: Path) -> list[Path]:
    venv = python.parent.parent
    return sorted(venv.glob("lib/python3*/site-packages")) + sorted(venv.glob("lib64/python3*/site-packages"))


def _editable_paths(python: Path) -> list[Path]:
    """Folders an environment's editable installs put on sys.path: `.pth` path lines, and the
    parents of the package folders in setuptools' `__editable___*_finder.py` MAPPING."""
    found: list[Path] = []
    for site in _site_packages(python):
        for pth in sorted(site.glob("*.pth")):
            try:
                lines = pth.read_text(errors="replace").splitlines()
            except OSError:
                continue
            found += [Path(line.strip()) for line in lines
                      if line.strip() and not line.startswith(("#", "import ")) and Path(line.strip()).is_absolute()]
        for finder in sorted(site.glob("__editable___*_finder.py")):
            # a top-level package found in a folder of its own name: that folder's parent is the
            # import root (a package mapped from a folder of another name cannot be put on a path)
            found += [Path(path).parent for name, path in _finder_mapping(finder).items()
                      if "." not in name and Path(path).name == name]
    return found


def _finder_mapping(finder: Path) -> dict[str, str]:
    """setuptools' editable finder: its `MAPPING = {package: folder}` (annotated or not)."""
    try:
        tree = ast.parse(finder.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == "MAPPING" for t in targets) and node.value is not None:
            try:
                mapping = ast.literal_eval(node.value)
            except ValueError:
                return {}
            if isinstance(mapping, dict):
                return {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, str)}
    return {}


def worktree_pythonpath(env: TestEnv, repo_root: Path, worktree: Path) -> list[str]:
    """PYTHONPATH entries (in the worktree) that make the tests import the agent's copy of the
    project: editable-install folders inside the user's checkout mapped into the worktree, and a
    `src/` layout's src. PYTHONPATH comes before site-packages and before editable finders."""
    root, worktree = Path(repo_root).resolve(), Path(worktree)
    out: list[str] = []
    candidates = _editable_paths(env.python) if env.python is not None else []
    src = root / "src"
    if src.is_dir() and any(p.suffix == ".py" or (p / "__init__.py").exists() for p in src.iterdir()):
        candidates.append(src)
    for path in candidates:
        try:
            rel = path.resolve().relative_to(root)
        except (OSError, ValueError):
            continue
        mapped = str(worktree / rel) if str(rel) != "." else str(worktree)
        if mapped not in out:
            out.append(mapped)
    return out
