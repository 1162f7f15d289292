"""Nightly `learnagent sleep`: a user crontab line or a systemd user timer, whichever the machine has.

Each repository gets its own entry, tagged with `# learnagent-sleep:<repo.key>` (cron) or named
`learnagent-sleep-<repo.key>` (systemd), so install replaces exactly that entry (idempotent) and
uninstall removes exactly it, leaving the user's other entries alone. Commands use absolute paths:
cron runs with a bare PATH and the user's home as working directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from learnagent.core import home
from learnagent.core.errors import LearnagentError, UsageError
from learnagent.core.repository import Repository

DEFAULT_AT = "03:00"
_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass
class ScheduleResult:
    backend: str  # cron | systemd
    action: str  # installed | updated | unchanged | removed | absent
    entry: str  # the crontab line or the timer unit name
    log: Path | None = None


def parse_at(at: str | None) -> tuple[int, int]:
    match = _AT.match((at or DEFAULT_AT).strip())
    if not match:
        raise UsageError(f"--at '{at}': expected HH:MM on a 24-hour clock, e.g. 03:00")
    return int(match.group(1)), int(match.group(2))


def tag(repo: Repository) -> str:
    return f"learnagent-sleep:{repo.key}"


def learnagent_executable() -> str:
    """An absolute path that runs this learnagent (the venv's script when there is one)."""
    beside = Path(sys.executable).parent / "learnagent"
    if beside.is_file():
        return str(beside)
    found = shutil.which("learnagent")
    if found:
        return str(Path(found).resolve())
    raise LearnagentError("cannot find the `learnagent` executable to schedule; is learnagent installed?")


def log_path(repo: Repository) -> Path:
    return home.data_home() / "logs" / f"sleep-{repo.key}.log"


def sleep_command(repo: Repository) -> str:
    root = repo.work_tree
    log = log_path(repo)
    return (f"cd {shlex.quote(str(root))} && {shlex.quote(learnagent_executable())} sleep"
            f" >> {shlex.quote(str(log))} 2>&1")


def detect_backend() -> str:
    if shutil.which("crontab"):
        return "cron"
    if shutil.which("systemctl"):
        probe = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True, text=True)
        if probe.returncode == 0:
            return "systemd"
    raise LearnagentError("neither `crontab` nor a systemd user session is available to schedule a nightly sleep")


# ---- cron --------------------------------------------------------------------------

def _crontab_read() -> list[str]:
    out = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    if out.returncode != 0:
        if "no crontab" in (out.stderr + out.stdout).lower():
            return []
        raise LearnagentError(f"`crontab -l` failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    return out.stdout.splitlines()


def _crontab_write(lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    out = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if out.returncode != 0:
        raise LearnagentError(f"`crontab -` refused the new table: {(out.stderr or out.stdout).strip()}")


def _is_ours(line: str, marker: str) -> bool:
    return line.rstrip().endswith(f"# {marker}")


def install_cron(repo: Repository, at: str | None = None) -> ScheduleResult:
    hour, minute = parse_at(at)
    marker = tag(repo)
    entry = f"{minute} {hour} * * * {sleep_command(repo)} # {marker}"
    lines = _crontab_read()
    ours = [ln for ln in lines if _is_ours(ln, marker)]
    if ours == [entry]:
        return ScheduleResult("cron", "unchanged", entry, log_path(repo))
    kept = [ln for ln in lines if not _is_ours(ln, marker)]
    log_path(repo).parent.mkdir(parents=True, exist_ok=True)
    _crontab_write(kept + [entry])
    return ScheduleResult("cron", "updated" if ours else "installed", entry, log_path(repo))


def uninstall_cron(repo: Repository) -> ScheduleResult:
    marker = tag(repo)
    lines = _crontab_read()
    kept = [ln for ln in lines if not _is_ours(ln, marker)]
    if len(kept) == len(lines):
        return ScheduleResult("cron", "absent", marker)
    _crontab_write(kept)
    return ScheduleResult("cron", "removed", marker)


# ---- systemd -----------------------------------------------------------------------

def _unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _unit_name(repo: Repository) -> str:
    return f"learnagent-sleep-{repo.key}"


def _systemctl(*args: str) -> None:
    out = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise LearnagentError(f"`systemctl --user {' '.join(args)}` failed: {(out.stderr or out.stdout).strip()}")


def install_systemd(repo: Repository, at: str | None = None) -> ScheduleResult:
    hour, minute = parse_at(at)
    name = _unit_name(repo)
    units = _unit_dir()
    units.mkdir(parents=True, exist_ok=True)
    service = (f"[Unit]\nDescription=learnagent sleep for {repo.work_tree}\n\n"
               f"[Service]\nType=oneshot\nExecStart=/bin/sh -c {shlex.quote(sleep_command(repo))}\n")
    timer = (f"[Unit]\nDescription=nightly learnagent sleep ({name})\n\n"
             f"[Timer]\nOnCalendar=*-*-* {hour:02d}:{minute:02d}:00\nPersistent=true\n\n"
             f"[Install]\nWantedBy=timers.target\n")
    svc_path, timer_path = units / f"{name}.service", units / f"{name}.timer"
    existed = svc_path.exists() and timer_path.exists()
    if existed and svc_path.read_text() == service and timer_path.read_text() == timer:
        return ScheduleResult("systemd", "unchanged", f"{name}.timer", log_path(repo))
    log_path(repo).parent.mkdir(parents=True, exist_ok=True)
    svc_path.write_text(service)
    timer_path.write_text(timer)
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", f"{name}.timer")
    return ScheduleResult("systemd", "updated" if existed else "installed", f"{name}.timer", log_path(repo))


def uninstall_systemd(repo: Repository) -> ScheduleResult:
    name = _unit_name(repo)
    units = _unit_dir()
    paths = [units / f"{name}.timer", units / f"{name}.service"]
    if not any(p.exists() for p in paths):
        return ScheduleResult("systemd", "absent", f"{name}.timer")
    subprocess.run(["systemctl", "--user", "disable", "--now", f"{name}.timer"], capture_output=True)
    for p in paths:
        p.unlink(missing_ok=True)
    subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True)
    return ScheduleResult("systemd", "removed", f"{name}.timer")


def install(repo: Repository, at: str | None = None) -> ScheduleResult:
    parse_at(at)  # bad input fails before touching anything
    return install_cron(repo, at) if detect_backend() == "cron" else install_systemd(repo, at)


def uninstall(repo: Repository) -> ScheduleResult:
    return uninstall_cron(repo) if detect_backend() == "cron" else uninstall_systemd(repo)
