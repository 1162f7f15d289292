"""What a sandboxed command may see: hidden secrets and the environment it gets.

Both lists are computed at run time (from `Path.home()`, `os.environ`, `data_home()`), so a
test that points HOME at a fake home with a planted key checks exactly what a user gets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from learnagent.core.testenv import TestEnv

from learnagent.core.home import data_home

# Credentials and private data under the user's home. Directories are covered by an empty
# read-only tmpfs, files by /dev/null. Relative to the home directory.
SECRET_HOME_PATHS: tuple[str, ...] = (
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker/config.json",
    ".netrc", ".pypirc", ".git-credentials", ".config/git/credentials", ".config/gh", ".config/hub",
    ".npmrc", ".yarnrc", ".yarnrc.yml", ".gem/credentials", ".cargo/credentials", ".cargo/credentials.toml",
    ".m2/settings.xml", ".gradle/gradle.properties", ".terraform.d/credentials.tfrc.json",
    ".vault-token", ".config/op", ".password-store", ".local/share/keyrings", ".pgpass", ".my.cnf",
    ".s3cfg", ".boto", ".config/rclone", ".cache/huggingface/token", ".huggingface/token",
    ".config/litellm", ".config/anthropic", ".config/openai", ".env",
    ".bash_history", ".zsh_history", ".python_history", ".psql_history", ".mysql_history",
    ".mozilla", ".config/google-chrome", ".config/chromium", ".thunderbird",
)

# Sockets and directories outside home that hand out host control or credentials even
# through a read-only mount (connect() on a unix socket ignores read-only mounts).
SECRET_SYSTEM_PATHS: tuple[str, ...] = (
    "/run/docker.sock", "/var/run/docker.sock", "/run/containerd", "/run/podman",
    "/run/user", "/var/run/user", "/run/secrets", "/var/run/secrets",
)

# Variables copied from the user's environment when set. Everything else (API keys,
# tokens, SSH_AUTH_SOCK, proxies with credentials) stays out; callers add what a command
# needs through `Sandbox(env=...)`.
PASSTHROUGH_ENV: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "USER", "LOGNAME")

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def hidden_paths() -> list[Path]:
    """Existing secret paths to hide, resolved (a symlinked ~/.ssh hides its target)."""
    home = Path.home()
    found: dict[str, Path] = {}
    candidates = [home / rel for rel in SECRET_HOME_PATHS] + [Path(p) for p in SECRET_SYSTEM_PATHS]
    sock = os.environ.get("SSH_AUTH_SOCK")
    if sock:
        candidates.append(Path(sock))
    for path in candidates:
        try:
            if not os.path.lexists(path):
                continue
            real = path.resolve()
            if not real.exists() or real == Path("/"):
                continue
        except OSError:  # cannot even stat it (permissions): then the command cannot read it either
            continue
        found[str(real)] = real
    return sorted(found.values(), key=lambda p: (len(p.parts), str(p)))


def learnagent_data_home() -> Path:
    """The episode store, adapters and other episodes' worktrees: hidden except our worktree."""
    return data_home().resolve()


def interpreter_roots() -> list[Path]:
    """The venv and the Python installation behind it: must stay visible for `python -m pytest`."""
    roots = {Path(sys.prefix).resolve(), Path(getattr(sys, "base_prefix", sys.prefix)).resolve()}
    vbin = venv_bin()
    if vbin is not None:
        roots.add(vbin.parent.resolve())
    return sorted(roots)


def venv_bin() -> Path | None:
    """The bin folder of the virtual environment learnagent runs from, if any."""
    from learnagent.core.testenv import learnagent_env

    env = learnagent_env()
    return env / "bin" if env is not None else None


def sandbox_env(home: str, tmpdir: str, extra: dict | None = None) -> dict[str, str]:
    """The environment a command gets: minimal and free of the user's secrets.

    PATH = venv bin (so `python -m pytest` uses the project's interpreter) + the system
    folders; HOME and TMPDIR point at the sandbox's private tmp; pagers and prompts are off
    because stdin is closed and nobody can answer.
    """
    path_parts = []
    vbin = venv_bin()
    if vbin is not None:
        path_parts.append(str(vbin))
    path_parts.append(SYSTEM_PATH)
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update({
        "PATH": ":".join(path_parts),
        "HOME": home,
        "TMPDIR": tmpdir,
        "TERM": "dumb",
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        "GIT_TERMINAL_PROMPT": "0",
        "PYTHONUNBUFFERED": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })
    if vbin is not None:
        env["VIRTUAL_ENV"] = str(vbin.parent)
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def project_env(env: "TestEnv", repo_root: Path, worktree: Path) -> dict[str, str]:
    """Environment variables for the episode's sandbox: the resolved environment first on PATH
    (learnagent's own bin left off, so nothing falls back to it silently), and PYTHONPATH."""
    from learnagent.core.testenv import worktree_pythonpath

    out: dict[str, str] = {}
    if env.bin_dir is not None and not env.own:
        out["PATH"] = f"{env.bin_dir}:{SYSTEM_PATH}"
        if env.venv is not None and (env.venv / "pyvenv.cfg").is_file():
            out["VIRTUAL_ENV"] = str(env.venv)
    paths = worktree_pythonpath(env, repo_root, worktree)
    if paths:
        out["PYTHONPATH"] = ":".join(paths)
    return out
