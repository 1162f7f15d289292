"""Per-repository configuration: `<repo>/.learnagent/config.toml`.

`learnagent init` writes it; every command reads it through `load_config`, falling back to
defaults so that `learnagent do` works in a repository that was never initialised.
The `.learnagent/` folder is listed in `.git/info/exclude` so it never shows in `git status`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from learnagent.core.errors import UsageError

CONFIG_DIR = ".learnagent"
CONFIG_FILE = "config.toml"
DEFAULT_MODEL = "smollm2"


@dataclass
class ModelConfig:
    # "smollm2" (embedded default), "scripted:FILE", "litellm:PROVIDER/MODEL",
    # "local:PATH_OR_HF_ID", or a bare local folder / Hugging Face id.
    name: str = DEFAULT_MODEL
    temperature: float = 0.0
    max_response_tokens: int = 512
    use_adapter: bool = True
    examples: str = "auto"  # worked example before the task: auto (local models) | on | off


@dataclass
class TestConfig:
    command: str = ""  # empty: none found; `do` then records no test run and says so
    timeout: int = 600


@dataclass
class Budgets:
    max_steps: int = 20
    max_tokens: int = 200_000  # prompt + completion tokens over the whole episode
    max_seconds: int = 1800
    command_timeout: int = 120
    output_cap: int = 20_000  # characters of a command's output kept


@dataclass
class RepoMapConfig:
    tokens: int = 1024


@dataclass
class SandboxConfig:
    mode: str = "auto"  # auto | require | none
    network: bool = False


@dataclass
class OutcomesConfig:
    # see docs/OUTCOMES.md: how committed lines become verdicts
    reject_after_days: float = 7.0
    survival_commits: int = 20
    accept_fraction: float = 0.9
    partial_fraction: float = 0.5
    revert_fraction: float = 0.6


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    test: TestConfig = field(default_factory=TestConfig)
    budgets: Budgets = field(default_factory=Budgets)
    repomap: RepoMapConfig = field(default_factory=RepoMapConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    outcomes: OutcomesConfig = field(default_factory=OutcomesConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def config_path(repo_root: Path) -> Path:
    return Path(repo_root) / CONFIG_DIR / CONFIG_FILE


def _merge(section, values: dict, where: str):
    known = {f.name: f for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise UsageError(f"{where}: unknown setting '{key}'")
        current = getattr(section, key)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise UsageError(f"{where}: '{key}' must be true or false")
        if isinstance(current, int) and not isinstance(current, bool) and not isinstance(value, int):
            raise UsageError(f"{where}: '{key}' must be a whole number")
        if isinstance(current, float) and not isinstance(value, (int, float)):
            raise UsageError(f"{where}: '{key}' must be a number")
        setattr(section, key, value)


def load_config(repo_root: Path) -> Config:
    cfg = Config()
    path = config_path(repo_root)
    if not path.exists():
        return cfg
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    for name, values in data.items():
        section = getattr(cfg, name, None)
        if section is None or not isinstance(values, dict):
            raise UsageError(f"{path}: unknown section [{name}]")
        _merge(section, values, f"{path} [{name}]")
    return cfg


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def dump_config(cfg: Config) -> str:
    lines = ["# learnagent configuration for this repository (see README: Configuration)"]
    for name, values in cfg.to_dict().items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def save_config(repo_root: Path, cfg: Config) -> Path:
    path = config_path(repo_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_config(cfg))
    tmp.replace(path)
    return path


def detect_test_command(repo_root: Path) -> str:
    """Guess the repository's test command from its build files; '' when none is found."""
    root = Path(repo_root)
    if (root / "package.json").exists():
        try:
            scripts = json.loads((root / "package.json").read_text()).get("scripts", {})
        except (json.JSONDecodeError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and scripts.get("test") and "no test specified" not in scripts["test"]:
            return "npm test"
    if (root / "Cargo.toml").exists():
        return "cargo test"
    if (root / "go.mod").exists():
        return "go test ./..."
    if any((root / f).exists() for f in ("pytest.ini", "conftest.py", "tox.ini")) or _has_python_tests(root):
        return "python -m pytest -q"
    for name in ("Makefile", "makefile", "GNUmakefile"):
        mk = root / name
        if mk.exists() and any(line.startswith("test:") for line in mk.read_text(errors="replace").splitlines()):
            return "make test"
    return ""


def _has_python_tests(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if pyproject.exists() and "[tool.pytest" in pyproject.read_text(errors="replace"):
        return True
    for pattern in ("test_*.py", "*_test.py"):
        for hit in root.rglob(pattern):
            if not any(part.startswith(".") or part in ("node_modules", "venv") for part in hit.relative_to(root).parts):
                return True
    return False
