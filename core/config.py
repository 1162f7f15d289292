"""Configuration: built-in defaults < the user's config < the repository's config < command-line options.

- The user's: `$LEARNAGENT_CONFIG`, else `$XDG_CONFIG_HOME/learnagent/config.toml`, else
  `~/.config/learnagent/config.toml` — e.g. the model you want everywhere.
- The repository's: `<repo>/.learnagent/config.toml`. `learnagent init` writes there only what it
  decided for this repository (the test command, `--model`); the other settings are written as
  comments, so the user's config still applies. The `.learnagent/` folder is listed in
  `.git/info/exclude` so it never shows in `git status`.
Every command reads the merged result through `load_config`; with neither file, the defaults,
so `learnagent do` works in a repository that was never initialised.
"""

from __future__ import annotations

import json
import os
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
    engine: str = "auto"  # local models: auto (llama.cpp when installed and a GGUF exists) | transformers | llama.cpp
    grammar: bool = True  # local models decode under the action grammar (llguidance) when it is installed
    served_adapters: bool = False  # litellm: the server holds this repo's adapters by name (docs/SERVING.md)


@dataclass
class TestConfig:
    command: str = ""  # empty: none found; `do` then records no test run and says so
    timeout: int = 600
    # the Python environment the tests (and the agent's commands) run in: "auto" (the project's
    # own, see core/testenv.py) or a venv folder / interpreter path
    python: str = "auto"


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
    """[outcomes]: how committed lines become verdicts (docs/OUTCOMES.md, store/outcomes.py)."""

    reject_after_days: float = 7.0  # the window: still open after it -> edited (enough committed) or rejected
    survival_commits: int = 20  # survival is measured this many commits after the one that carried the lines
    accept_fraction: float = 0.9  # share of the agent's lines committed for a verdict
    partial_fraction: float = 0.5  # at the window's end: at least this much committed -> edited
    revert_fraction: float = 0.6  # share of the committed lines one commit removes -> reverted


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


@dataclass
class StoreSettings:
    """[store] (your own config only): where your episodes live; empty: $LEARNAGENT_HOME/learnagent.db."""

    url: str = ""  # postgresql://USER:PASSWORD@HOST/DB, sqlite:///PATH or a path; LEARNAGENT_DB overrides it


@dataclass
class TeamSettings:
    """[team] (your own config only): the team store `learnagent push` sends to (docs/TEAM.md)."""

    url: str = ""  # postgresql://...; `push --to` overrides it
    # the team's `learnagent serve` (http://gpu-box:8000/v1): `do` in a repository you `team join`ed
    # runs on it with the team's promoted adapter of that repository (docs/TEAM.md "Serving")
    serve: str = ""


# Sections that decide where your episodes go: read from your own config only. A repository's
# .learnagent/config.toml (which a cloned repository may carry) that sets them is refused.
USER_ONLY = {"store": StoreSettings, "team": TeamSettings}


def config_path(repo_root: Path) -> Path:
    return Path(repo_root) / CONFIG_DIR / CONFIG_FILE


def user_config_path() -> Path:
    """The per-user config file (it need not exist)."""
    explicit = os.environ.get("LEARNAGENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "learnagent" / CONFIG_FILE


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


def _read(path: Path) -> dict:
    """A config file's settings, checked against the schema; {} when there is no file."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    probe = Config()
    for name, values in data.items():
        if name in USER_ONLY:
            if Path(path) != user_config_path():
                raise UsageError(f"{path}: [{name}] may only be set in your own config ({user_config_path()}): "
                                 "a repository does not choose where your episodes go")
            if not isinstance(values, dict):
                raise UsageError(f"{path}: [{name}] must be a table")
            _merge(USER_ONLY[name](), values, f"{path} [{name}]")
            continue
        section = getattr(probe, name, None)
        if section is None or not isinstance(values, dict):
            raise UsageError(f"{path}: unknown section [{name}]")
        _merge(section, values, f"{path} [{name}]")
    return data


def load_config(repo_root: Path | None, *, user: bool = True) -> Config:
    """The settings in force: defaults, then the user's config (unless `user=False`), then the
    repository's (none without a checkout: `sleep --store URL --repo NAME`)."""
    cfg = Config()
    for path in ([user_config_path()] if user else []) + ([config_path(repo_root)] if repo_root is not None else []):
        for name, values in _read(path).items():
            if name in USER_ONLY:
                continue  # user_settings() reads them
            _merge(getattr(cfg, name), values, f"{path} [{name}]")
    return cfg


def user_settings(name: str):
    """Your own config's [store] or [team] section (defaults when unset), and where it was read."""
    path = user_config_path()
    section = USER_ONLY[name]()
    _merge(section, _read(path).get(name, {}), f"{path} [{name}]")
    return section, f"{path} [{name}]"


def user_store_url() -> tuple[str, str]:
    """[store] url of your own config ("" when unset) and where it was read, for messages."""
    section, where = user_settings("store")
    return section.url, f"{where} url"


def repo_settings(repo_root: Path) -> set[tuple[str, str]]:
    """(section, key) of every setting the repository's config file sets."""
    return {(name, key) for name, values in _read(config_path(repo_root)).items() for key in values}


def setting_source(repo_root: Path, section: str, key: str) -> str:
    """Where a setting in force comes from: the repository's file, the user's file, or "default"."""
    for path in (config_path(repo_root), user_config_path()):
        if key in _read(path).get(section, {}):
            return str(path)
    return "default"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def dump_config(cfg: Config, keep: set[tuple[str, str]] | None = None) -> str:
    """TOML for `cfg`. With `keep`, only those (section, key) are set; the others are written as
    comments (the defaults, for reference), so that they do not hide the user's config."""
    lines = ["# learnagent configuration for this repository (see README: Configuration)"]
    if keep is not None:
        lines.append(f"# Commented lines show the defaults. Your own config ({user_config_path()}) applies to")
        lines.append("# every repository; a line uncommented here wins over it in this one.")
    for name, values in cfg.to_dict().items():
        lines.append(f"\n[{name}]")
        for k, v in values.items():
            commented = keep is not None and (name, k) not in keep
            lines.append(f"{'# ' if commented else ''}{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def save_config(repo_root: Path, cfg: Config, keep: set[tuple[str, str]] | None = None) -> Path:
    path = config_path(repo_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_config(cfg, keep))
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
