"""The tool table (agent/tooltable.py) is the one definition of the tool set: the parser's tags, the
dispatch and the system prompt all follow it. Then every tool's handler in-process, reached the way
the loop reaches it: the model's text → parse_action → Tools.run."""

from __future__ import annotations

import dataclasses
import re

import pytest

from learnagent.agent import actions, prompts
from learnagent.agent.actions import Action, parse_action
from learnagent.agent.tools import Finished, ToolError, Tools
from learnagent.agent.tooltable import TABLE
from learnagent.sandbox import Sandbox

# The system prompt as it was written by hand before the table existed. Prompt text is behaviour
# (bench/bench_first_action.py measures what small models do with it): a change must be deliberate.
SYSTEM_BEFORE_THE_TABLE = """You are learnagent, a careful software engineer working in a git repository.
You work in steps. In each reply, think briefly, then write exactly ONE action at the end:

<list path="DIR"/>                          list files
<read path="FILE"/>                         read a file (add start="N" end="M" for a range)
<search pattern="REGEX" path="DIR"/>        search file contents
<edit path="FILE">
<<<<<<< SEARCH
exact lines copied from the file
=======
the new lines
>>>>>>> REPLACE
</edit>                                     change a file (one or more SEARCH/REPLACE blocks)
<write path="FILE">whole new content</write>  create or overwrite a file
<run>COMMAND</run>                          run a shell command in the repository
<test/>                                     run the repository's tests{test_hint}
<finish>SUMMARY</finish>                    stop when the task is done

After each action you get its result. Keep changes small and in the style of the code around them.
Run the tests before you finish."""


@pytest.fixture
def tools(git_repo):
    sb = Sandbox(git_repo, mode="none")
    yield Tools(git_repo, sb, test_command="python -m pytest -q", output_cap=4000)
    sb.close()


# ---- the table drives the parser, the dispatch and the prompt -----------------------------------------

def test_the_parsers_tags_are_the_tables():
    assert actions.TOOLS == tuple(TABLE) == ("list", "read", "search", "edit", "write", "run", "test", "finish")
    assert actions.SELF_CLOSING == ("list", "read", "search", "test")
    assert actions.WITH_BODY == ("edit", "write", "run", "finish")
    assert actions.REQUIRED == {"read": ("path",), "search": ("pattern",), "edit": ("path",), "write": ("path",)}
    assert [m.group("name") for m in actions._TAG.finditer("<list/> <lister/> <run>x</run> <readme/>")] == \
        ["list", "run"]


@pytest.mark.parametrize("test_command, hint", [("python -m pytest -q", " (python -m pytest -q)"),
                                                ("", " (none configured)")])
def test_the_system_prompt_renders_as_before(test_command, hint):
    assert prompts.system_prompt(test_command) == SYSTEM_BEFORE_THE_TABLE.format(test_hint=hint)


@pytest.mark.parametrize("name", list(TABLE))
def test_every_prompt_line_is_an_action_the_parser_accepts(name):
    spec = TABLE[name]
    action = parse_action(spec.usage())
    assert action.name == name and action.spec is spec
    assert set(action.args) == {a.name for a in spec.attrs if a.in_usage}
    assert spec.usage().split("\n")[0] in prompts.system_prompt("pytest")


def test_the_no_action_message_names_only_tools_of_the_table():
    with pytest.raises(actions.FormatError) as err:
        parse_action("no action here")
    named = re.findall(r"<(\w+)", str(err.value))
    assert named and set(named) <= set(TABLE)


@pytest.mark.parametrize("name", list(TABLE))
def test_attributes_left_out_of_the_usage_are_told_in_the_description(name):
    spec = TABLE[name]
    for attr in spec.attrs:
        if not attr.in_usage:
            assert f'{attr.name}="{attr.value}"' in spec.description
            assert not attr.required  # a required attribute the prompt does not show could never be written


@pytest.mark.parametrize("name", list(TABLE))
def test_every_row_dispatches_to_its_handler(name, tools, monkeypatch):
    seen = []
    spy = dataclasses.replace(TABLE[name], handler=lambda tools, action: seen.append(action.name) or "ran")
    monkeypatch.setitem(TABLE, name, spy)
    assert tools.run(Action(name)) == "ran" and seen == [name]


# ---- every handler in-process -------------------------------------------------------------------------

def run(tools: Tools, reply: str) -> str:
    return tools.run(parse_action(reply))


def test_list(tools, git_repo):
    (git_repo / "pkg").mkdir()
    (git_repo / "pkg" / "mod.py").write_text("x = 1\n")
    assert run(tools, "<list/>").splitlines() == ["calc.py", "test_calc.py", "pkg/mod.py"]
    assert run(tools, '<list path="pkg"/>') == "pkg/mod.py"
    assert run(tools, '<list path="calc.py"/>') == "calc.py"
    with pytest.raises(ToolError, match="nope does not exist"):
        run(tools, '<list path="nope"/>')


def test_read_whole_file_and_a_range(tools, git_repo):
    (git_repo / "five.py").write_text("".join(f"line{i}\n" for i in range(1, 6)))
    assert run(tools, '<read path="five.py"/>') == "five.py (5 lines)\n" + "\n".join(
        f"{i:>5} line{i}" for i in range(1, 6))
    assert run(tools, '<read path="five.py" start="2" end="3"/>') == \
        "five.py (5 lines)\n    2 line2\n    3 line3\n... (2 more lines; read with start=\"4\")"
    with pytest.raises(ToolError, match='start="x" is not a line number'):
        run(tools, '<read path="five.py" start="x"/>')
    with pytest.raises(ToolError, match="is a directory"):
        run(tools, '<read path="."/>')


def test_search(tools):
    assert run(tools, '<search pattern="def \\w+"/>') == "calc.py:1: def add(a, b):\ntest_calc.py:4: def test_add():"
    assert run(tools, '<search pattern="add\\(" path="calc.py"/>') == "calc.py:1: def add(a, b):"
    assert run(tools, '<search pattern="no such text"/>') == "no matches"


def test_write_creates_and_overwrites(tools, git_repo):
    assert run(tools, '<write path="sub/new.py">\nx = 1</write>') == "created sub/new.py (1 lines)"
    assert (git_repo / "sub" / "new.py").read_text() == "x = 1\n"  # a final newline is added
    assert run(tools, '<write path="sub/new.py">\ny = 2\nz = 3\n</write>') == "overwrote sub/new.py (2 lines)"
    assert (git_repo / "sub" / "new.py").read_text() == "y = 2\nz = 3\n"
    with pytest.raises(ToolError, match="sub is a directory"):
        run(tools, '<write path="sub">x</write>')


def test_edit(tools, git_repo):
    reply = '<edit path="calc.py">\n<<<<<<< SEARCH\n    return a + b\n=======\n    return b + a\n>>>>>>> REPLACE\n</edit>'
    assert run(tools, reply) == "edited calc.py: 1 block(s) applied"
    assert (git_repo / "calc.py").read_text() == "def add(a, b):\n    return b + a\n"
    with pytest.raises(ToolError, match="missing.py does not exist"):
        run(tools, reply.replace("calc.py", "missing.py"))


def test_run_reports_output_and_exit_code(tools):
    out = run(tools, "<run>echo hello; echo oops >&2; exit 3</run>")
    assert out.startswith("hello\noops\n[exit code 3, ") and out.endswith("s]")


def test_run_is_killed_at_its_timeout(git_repo):
    sb = Sandbox(git_repo, mode="none")
    try:
        tools = Tools(git_repo, sb, test_command="", command_timeout=1)
        assert "[timed out after 1s (killed)" in run(tools, "<run>sleep 30</run>")
    finally:
        sb.close()


def test_test_runs_the_configured_command_and_reports_it(tools):
    recorded = []
    tools.on_test = lambda command, result: recorded.append((command, result.exit_code))
    out = run(tools, "<test/>")
    assert out.startswith("$ python -m pytest -q\n") and "1 passed" in out and "[exit code 0, " in out
    assert recorded == [("python -m pytest -q", 0)]


def test_test_without_a_command_is_an_error(tools):
    tools.test_command = ""
    with pytest.raises(ToolError, match="no test command is configured"):
        run(tools, "<test/>")


def test_finish_carries_the_summary(tools):
    with pytest.raises(Finished) as done:
        run(tools, "All good.\n<finish>\nfixed add\n</finish>")
    assert done.value.summary == "fixed add"
    with pytest.raises(Finished) as done:
        run(tools, "<finish></finish>")
    assert done.value.summary == "done"
