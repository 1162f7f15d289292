"""Attacks on the episode's data, through the real `learnagent do` (issue 10, data half).

A scripted model replays what a hostile agent would do, under real bubblewrap (`--sandbox
require`) with the real SQLite store: print a private key in ranges, dump credentials in every
syntax, read a FIFO, read a 5 MB line, run a regex that backtracks for hours, create a file name
that is not UTF-8, get a default-ignored file's definitions into the repo map, and be killed with
SIGKILL. Each test shows the attack failing: the run ends on its own (bounded time, exit 0, no
traceback), the raw database file and its write-ahead log hold none of the secrets, what the
episode recorded is bounded, and the user's repository is unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.sandbox import bwrap_available
from secret_samples import KEY_LINES, SAMPLES

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) is not installed or cannot run here")

OUTPUT_CAP = 20_000  # the default [budgets] output_cap


def raw_store() -> bytes:
    """The database file and its -wal/-shm as they are on disk (no checkpoint first: the WAL is searched too)."""
    return b"".join(p.read_bytes() for p in sorted(home.db_path().parent.glob("learnagent.db*")))


def episode(repo: Path, out) -> dict:
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
    shown = run_cli("show", eid, "--json", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def do(repo: Path, tmp_path: Path, task: str, responses: list, timeout: int = 240):
    script = write_script(tmp_path / "attack.json", responses)
    return run_cli("do", task, "--model", f"scripted:{script}", "--no-apply", "--json", "--sandbox", "require",
                   cwd=repo, timeout=timeout)


def repo_state(repo: Path) -> tuple[str, str, str]:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain", "--untracked-files=all"),
            git(repo, "for-each-ref", "refs/heads/main"))


def results(ep: dict) -> list[str]:
    return [t["result"] for t in ep["tool_calls"]]


@needs_bwrap
def test_key_body_in_ranged_reads_and_credentials_in_every_syntax_never_reach_the_store(git_repo, tmp_path):
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END RSA PRIVATE KEY-----\n"
    (git_repo / "deploy").mkdir()
    (git_repo / "deploy" / "deploy_identity").write_text(key)  # no default-ignored name: the tools may read it
    creds = [SAMPLES[n][0] for n in ("db_pass_env", "db_pass_env_bare", "db_pass_yaml", "db_pass_json", "redis_url",
                                     "docker_auth", "cookie_header", "set_cookie", "mysql_p", "password_flag",
                                     "sshpass", "netrc", "service_key_env")]
    (git_repo / "deploy" / "notes.txt").write_text("\n".join(creds) + "\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "deploy files")
    before = repo_state(git_repo)
    out = do(git_repo, tmp_path, "tidy the deploy notes", [
        "<run>sed -n 3,9p deploy/deploy_identity</run>",
        "<run>tail -n 4 deploy/deploy_identity; cat -n deploy/deploy_identity | sed -n 5,7p</run>",
        '<read path="deploy/deploy_identity" start="4" end="8"/>',
        "<run>cat deploy/notes.txt</run>",
        '<search pattern="PASS|redis|auth|Cookie|mysql|password|KEY" path="deploy"/>',
        f"<write path=\"deploy/copy.txt\">\n{KEY_LINES[2]}\n{KEY_LINES[3]}\n{creds[0]}\n</write>",
        "<finish>done</finish>",
    ])
    ep = episode(git_repo, out)
    everything = json.dumps(ep)
    assert "[REDACTED:private_key]" in everything and "[REDACTED:password]" in everything  # the outputs got there
    assert ep["tool_calls"][0]["result"].count("[REDACTED:private_key]") == 1
    secrets = KEY_LINES + [SAMPLES[n][1] for n in ("db_pass_env", "db_pass_env_bare", "db_pass_yaml",
                                                   "db_pass_json", "redis_url", "docker_auth", "cookie_header",
                                                   "set_cookie", "mysql_p", "password_flag", "sshpass", "netrc",
                                                   "service_key_env")]
    raw = raw_store()
    assert [s for s in secrets if s.encode() in raw] == []
    assert [s for s in secrets if s in everything] == []
    assert repo_state(git_repo) == before


@needs_bwrap
def test_a_fifo_does_not_hang_the_run(git_repo, tmp_path):
    before = repo_state(git_repo)
    started = time.monotonic()
    out = do(git_repo, tmp_path, "look at the pipe", [
        "<run>mkfifo pipe && ls -l pipe</run>",
        '<read path="pipe"/>',
        '<search pattern="x" path="pipe"/>',
        '<edit path="pipe">\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</edit>',
        '<write path="pipe">\nx\n</write>',
        '<search pattern="return"/>',  # a tree walk that meets the FIFO
        "<run>rm pipe</run>",  # a FIFO left in the final change is refused (exit 5): test_episode_checkout.py
        "<finish>done</finish>",
    ])
    ep = episode(git_repo, out)
    refused = [r for r in results(ep) if "named pipe (FIFO); the file tools only open regular files" in r]
    assert len(refused) == 4
    assert "calc.py:2:" in results(ep)[5]
    assert time.monotonic() - started < 200  # before: the first <read> blocked until the run was killed
    assert repo_state(git_repo) == before


@needs_bwrap
def test_a_5mb_line_is_stored_capped(git_repo, tmp_path):
    out = do(git_repo, tmp_path, "read the log", [
        "<run>python3 -c \"print('x' * 5_000_000)\" > big.log; wc -c big.log</run>",
        '<read path="big.log"/>',
        '<search pattern="x+" path="big.log"/>',
        "<run>rm big.log</run>",  # out of the final diff, which is not a tool result (not capped here)
        "<finish>done</finish>",
    ])
    ep = episode(git_repo, out)
    read = results(ep)[1]
    assert "line 1 cut at 2000 characters of 5,000,000 bytes" in read and "sed -n 1p big.log | cut -c" in read
    for text in results(ep) + [m["content"] for m in ep["messages"]]:
        assert len(text.encode()) <= OUTPUT_CAP + 200  # the observation adds a short header to the result
    assert len(raw_store()) < 2_000_000  # before: the line was stored twice (10 MB)
    assert ep["prompt_tokens"] < 100_000  # before: 1.3 M tokens counted


@needs_bwrap
def test_a_catastrophic_regex_is_stopped(git_repo, tmp_path):
    started = time.monotonic()
    out = do(git_repo, tmp_path, "find the a's", [
        "<run>python3 -c \"print('a' * 64 + '!')\" > slow.txt</run>",
        '<search pattern="(a|aa)+$"/>',
        "<finish>done</finish>",
    ])
    ep = episode(git_repo, out)
    assert "search stopped after 10s" in results(ep)[1]
    assert time.monotonic() - started < 200  # 2^64 backtracking steps would never end
    assert ep["tool_calls"][1]["ok"] is False, [t["result"] for t in ep["tool_calls"]]


NON_UTF8_STEPS = [
    "<run>printf 'menu = 1\\n' > \"$(printf 'caf\\351.txt')\"; ls</run>",
    "<list/>",
    '<read path="caf\\xe9.txt"/>',
    '<search pattern="menu"/>',
]


@needs_bwrap
def test_a_file_name_that_is_not_utf8_does_not_crash_the_tools(git_repo, tmp_path):
    out = do(git_repo, tmp_path, "list the files", NON_UTF8_STEPS + [
        "<run>rm caf*.txt</run>",  # the final diff with such a name: see the test below
        "<finish>done</finish>",
    ])
    ep = episode(git_repo, out)
    listed, read, found = results(ep)[1:4]
    assert "caf\\xe9.txt" in listed
    assert read == "caf\\xe9.txt (1 lines)\n    1 menu = 1"
    assert found == "caf\\xe9.txt:1: menu = 1"
    assert ep["status"] == "finished"


@needs_bwrap
def test_a_non_utf8_file_name_in_the_final_change_does_not_crash_the_episode(git_repo, tmp_path):
    out = do(git_repo, tmp_path, "add a file", NON_UTF8_STEPS + ["<finish>done</finish>"])
    assert episode(git_repo, out)["status"] == "finished"


@needs_bwrap
def test_a_default_ignored_files_definitions_stay_out_of_the_repo_map(git_repo, tmp_path):
    (git_repo / "secrets.py").write_text("def vault_unseal_token():\n    return 'tok'\n")  # default: secrets.*
    (git_repo / "app.py").write_text("from secrets import vault_unseal_token\n\n\ndef start_server():\n"
                                     "    return vault_unseal_token()\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "app")
    out = do(git_repo, tmp_path, "make start_server in app.py log its start", ["<finish>done</finish>"])
    ep = episode(git_repo, out)
    opening = "\n".join(m["content"] for m in ep["messages"] if m["role"] == "user")
    assert "def start_server" in opening  # the map is there
    assert "secrets.py" not in opening and "def vault_unseal_token" not in opening
    assert b"def vault_unseal_token" not in raw_store()


@needs_bwrap
def test_gc_removes_the_sandbox_tmp_of_a_killed_run(git_repo, tmp_path, private_system_tmp):
    script = write_script(tmp_path / "slow.json", ["<run>echo started > /tmp/marker; sleep 120</run>",
                                                  "<finish>done</finish>"])
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", "do", "wait", "--model",
                             f"scripted:{script}", "--no-apply", "--sandbox", "require"], cwd=git_repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    folders: list[Path] = []
    while time.monotonic() < deadline and not any((f / "marker").exists() for f in folders):
        folders = list(private_system_tmp.glob("learnagent-sandbox-*"))
        time.sleep(0.2)
    assert [f.name for f in folders if (f / "marker").exists()], "the run never started its command"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (orphan,) = folders
    assert orphan.name.startswith(f"learnagent-sandbox-{proc.pid}.")
    dry = run_cli("gc", "--dry-run", cwd=git_repo)
    assert dry.returncode == 0, dry.stderr
    assert "sandbox tmp" in dry.stdout and f"{proc.pid} is gone" in dry.stdout.replace("\n", " ")
    assert orphan.exists()  # a dry run changes nothing
    live_dir = private_system_tmp / f"learnagent-sandbox-{os.getpid()}.0-abcdefgh"  # a live process's: stays
    live_dir.mkdir()
    done = run_cli("gc", cwd=git_repo)
    assert done.returncode == 0, done.stderr
    assert not orphan.exists() and live_dir.exists()


def test_the_data_home_and_the_store_are_private_after_a_run(git_repo, tmp_path):
    out = run_cli("do", "nothing", "--model", f"scripted:{write_script(tmp_path / 's.json', ['<finish>ok</finish>'])}",
                  "--no-apply", "--sandbox", "none", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    data = home.data_home()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = sorted(data.glob("learnagent.db*"))
    assert [f.name for f in files][:1] == ["learnagent.db"]
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    assert "made private" not in out.stderr  # a new home is private from the start: nothing to say
