"""The agent's tools in-process (mini-swe-agent style): each tool function called directly on a
worktree that holds hostile content (ignored files, FIFOs, sockets, a 5 MB line, a regex that
backtracks for hours, file names that are not UTF-8). Every result must be bounded, valid UTF-8,
and free of ignored files' content; nothing may block.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import git
from learnagent.agent.actions import Action
from learnagent.agent.tools import MAX_LINE_CHARS, ToolError, Tools, cap_bytes
from learnagent.sandbox import Sandbox

SECRET = "s3cr3t-value-from-an-ignored-file"
CAP = 4000


@pytest.fixture
def repo(git_repo):
    """The test repository plus files every tool must keep out of its output."""
    (git_repo / ".env").write_text(f"API_TOKEN={SECRET}\n")
    (git_repo / "secrets.py").write_text(f"def vault():\n    return '{SECRET}'\n")  # default: secrets.*
    (git_repo / "config").mkdir()
    (git_repo / "config" / "prod.key").write_text(f"{SECRET}\n")
    (git_repo / "private").mkdir()
    (git_repo / "private" / "notes.txt").write_text(f"{SECRET}\n")
    (git_repo / ".learnagentignore").write_text("private/\n")
    (git_repo / "link_to_env.txt").symlink_to(".env")  # a symlink whose own name is not ignored
    (git_repo / "README.md").write_text("the value is configured elsewhere\n")
    return git_repo


@pytest.fixture
def tools(repo):
    sb = Sandbox(repo, mode="none")
    yield Tools(repo, sb, test_command="", output_cap=CAP, search_timeout=2.0)
    sb.close()


def act(name: str, body: str = "", **args) -> Action:
    return Action(name, dict(args), body)


def bounded(text: str) -> str:
    """A result as the store and the model get it: valid UTF-8 within the cap."""
    assert len(text.encode("utf-8")) <= CAP
    return text


def run_within(seconds: float, fn, *args):
    """fn(*args) in a thread; fails (instead of hanging the suite) if it has not returned in time."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- ignored files ------------------------------------------------------------------------------------

def test_list_and_search_skip_ignored_files(tools, repo):
    (repo / "sub").mkdir()
    (repo / "sub" / ".git").write_text("gitdir: /elsewhere/.git/worktrees/sub\n")  # a worktree's pointer file
    listed = bounded(tools.run(act("list")))
    assert "calc.py" in listed and "README.md" in listed
    for name in (".env", "secrets.py", "prod.key", "private/notes.txt", "sub/.git"):
        assert name not in listed
    assert "gitdir" not in tools.run(act("search", pattern="gitdir"))
    found = bounded(tools.run(act("search", pattern="s3cr3t|value")))
    assert "README.md:1:" in found
    assert SECRET not in found  # neither the ignored files nor the symlink to .env were searched
    assert SECRET not in bounded(tools.run(act("search", pattern="s3cr3t", path="private")))


def test_ignored_files_are_refused_by_name_and_through_symlinks(tools):
    for name in (".env", "secrets.py", "config/prod.key", "private/notes.txt", "link_to_env.txt"):
        with pytest.raises(ToolError, match="excluded by .learnagentignore"):
            tools.run(act("read", path=name))
    with pytest.raises(ToolError, match="excluded"):
        tools.run(act("search", pattern=".", path=".env"))


# ---- files that are not regular ----------------------------------------------------------------------

def test_fifo_is_refused_by_every_file_tool_without_blocking(tools, repo):
    os.mkfifo(repo / "pipe")
    for action in (act("read", path="pipe"), act("write", "x", path="pipe"),
                   act("edit", "<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE", path="pipe"),
                   act("search", pattern="x", path="pipe")):
        with pytest.raises(ToolError, match="named pipe"):
            run_within(10, tools.run, action)
    assert "pipe" in run_within(10, tools.run, act("list"))  # its name may be listed
    assert "README.md" in run_within(10, tools.run, act("search", pattern="configured"))  # a tree walk skips it


def test_socket_and_device_are_refused(tools, repo):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(repo / "sock"))
    try:
        with pytest.raises(ToolError, match="socket"):
            run_within(10, tools.run, act("read", path="sock"))
    finally:
        server.close()
    try:
        os.mknod(repo / "zero", 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    for action in (act("read", path="zero"), act("write", "x", path="zero")):
        with pytest.raises(ToolError, match="character device"):
            run_within(10, tools.run, action)


# ---- sizes ---------------------------------------------------------------------------------------------

def test_a_5mb_line_is_cut_and_says_how_to_read_the_rest(tools, repo):
    (repo / "big.txt").write_text("head\n" + "x" * 5_000_000 + "\ntail\n")
    out = bounded(tools.run(act("read", path="big.txt")))
    assert out.startswith("big.txt (3 lines)\n    1 head\n    2 " + "x" * MAX_LINE_CHARS + " [... line 2 cut")
    assert "5,000,000 bytes" in out and "sed -n 2p big.txt | cut -c 2001-" in out
    assert out.endswith("    3 tail")


def test_read_stops_at_the_byte_cap_and_says_where_to_go_on(tools, repo):
    (repo / "wide.txt").write_text("".join(f"{i:04d} " + "y" * 150 + "\n" for i in range(300)))
    out = bounded(tools.run(act("read", path="wide.txt")))
    shown = [line for line in out.splitlines() if line[:5].strip().isdigit()]
    assert 10 < len(shown) < 300
    assert out.endswith(f'read on with start="{len(shown) + 1}")')
    again = bounded(tools.run(act("read", path="wide.txt", start=str(len(shown) + 1))))
    assert again.splitlines()[1].startswith(f"{len(shown) + 1:>5} {len(shown):04d}")


def test_a_file_without_newlines_is_read_in_bounded_memory(tools, repo):
    import tracemalloc

    (repo / "huge.log").write_bytes(b"q" * (70 << 20))  # 70 MB in one line: over the line-count limit too
    tracemalloc.start()
    try:
        out = bounded(tools.run(act("read", path="huge.log")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.startswith("huge.log (73,400,320 bytes; lines not counted)\n    1 qqq")
    assert peak < 8 << 20  # the old tool held the whole file (and its decoded copy)
    (repo / "blob.bin").write_bytes(b"\x7fELF\0\0" + b"x" * 100)
    with pytest.raises(ToolError, match="binary"):
        tools.run(act("read", path="blob.bin"))


def test_every_result_and_error_is_capped(tools, repo):
    for i in range(200):
        (repo / f"{'n' * 200}_{i:03d}.txt").write_text("hit\n")
    out = tools.run(act("list"))
    assert "[... output truncated:" in out
    bounded(out)
    with pytest.raises(ToolError) as err:
        tools.run(act("edit", "<<<<<<< SEARCH\n" + "w" * 9000 + "\n=======\nz\n>>>>>>> REPLACE", path="calc.py"))
    bounded(str(err.value))
    assert cap_bytes("é" * 5000, 101).count("output truncated") == 1


# ---- regex time limit ----------------------------------------------------------------------------------

def test_a_catastrophic_regex_is_stopped_at_the_time_limit(tools, repo):
    (repo / "a_first.txt").write_text("aaaa\n")  # found before the slow file
    (repo / "slow.txt").write_text("a" * 60 + "!\n")
    started = time.monotonic()
    out = run_within(60, tools.run, act("search", pattern="(a|aa)+$"))
    took = time.monotonic() - started
    assert "a_first.txt:1: aaaa" in out  # the hits before the deadline are kept
    assert "search stopped after 2s" in out and "backtrack" in out
    assert took < 30  # 2^60 steps would take centuries; the worker was killed
    (repo / "a_first.txt").unlink()
    with pytest.raises(ToolError, match="search stopped after 2s"):
        run_within(60, tools.run, act("search", pattern="(a|aa)+$"))


def test_search_worker_is_gone_after_the_deadline(tools, repo):
    import psutil

    (repo / "slow.txt").write_text("a" * 60 + "!\n")
    with pytest.raises(ToolError):
        tools.run(act("search", pattern="(a|aa)+$"))
    workers = [p for p in psutil.Process().children(recursive=True)
               if "search_worker" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]
    assert workers == []


def test_bad_regex_is_a_tool_error(tools):
    with pytest.raises(ToolError, match="bad regular expression"):
        tools.run(act("search", pattern="(unclosed"))


# ---- file names that are not UTF-8 --------------------------------------------------------------------

def test_non_utf8_file_names_are_shown_escaped_and_usable(tools, repo):
    raw = os.path.join(os.fsencode(repo), b"caf\xe9-\xff.txt")
    with open(raw, "wb") as fh:
        fh.write(b"menu = 'latte'\n")
    listed = bounded(tools.run(act("list")))
    assert "caf\\xe9-\\xff.txt" in listed and "not UTF-8" in listed
    listed.encode("utf-8")  # storable: no surrogates left
    read = bounded(tools.run(act("read", path="caf\\xe9-\\xff.txt")))
    assert read == "caf\\xe9-\\xff.txt (1 lines)\n    1 menu = 'latte'"
    found = bounded(tools.run(act("search", pattern="latte")))
    assert found == "caf\\xe9-\\xff.txt:1: menu = 'latte'"
    tools.run(act("edit", "<<<<<<< SEARCH\nmenu = 'latte'\n=======\nmenu = 'mocha'\n>>>>>>> REPLACE",
                  path="caf\\xe9-\\xff.txt"))
    with open(raw, "rb") as fh:
        assert fh.read() == b"menu = 'mocha'\n"
    json.dumps(tools.run(act("list")), ensure_ascii=False).encode("utf-8")


def test_write_and_edit_still_work_on_ordinary_files(tools, repo):
    assert tools.run(act("write", "def mul(a, b):\n    return a * b", path="ops/mul.py")) == \
        "created ops/mul.py (2 lines)"
    assert tools.run(act("edit", "<<<<<<< SEARCH\n    return a * b\n=======\n    return b * a\n>>>>>>> REPLACE",
                         path="ops/mul.py")) == "edited ops/mul.py: 1 block(s) applied"
    assert (repo / "ops" / "mul.py").read_text() == "def mul(a, b):\n    return b * a\n"
    assert tools.run(act("write", "x = 1", path="ops/mul.py")) == "overwrote ops/mul.py (1 lines)"
    assert tools.run(act("read", path="calc.py", start="2", end="2")) == "calc.py (2 lines)\n    2     return a + b"
    git(repo, "status")  # the repository is intact
