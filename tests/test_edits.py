"""The edit applier (agent/edits.py) on hand-made text: each rule of `<edit>` in isolation, then
through the tool on a real file (all or nothing)."""

from __future__ import annotations

import pytest

from learnagent.agent.actions import parse_action
from learnagent.agent.edits import EditError, apply_blocks, parse_edit_blocks
from learnagent.agent.tools import ToolError, Tools
from learnagent.sandbox import Sandbox

CODE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def edit(text: str, *blocks: str) -> str:
    return apply_blocks(text, parse_edit_blocks("".join(blocks)), "ops.py")


def test_blocks_parse_in_order_without_their_framing_newlines():
    body = block("a\nb", "c") + "some words between\n" + block("d", "")
    assert parse_edit_blocks(body) == [("a\nb", "c"), ("d", "")]


@pytest.mark.parametrize("body", ["", "just text", "<<<<<<< SEARCH\na\n=======\nb\n", "=======\n>>>>>>> REPLACE"])
def test_a_body_without_a_complete_block_shows_the_form(body):
    with pytest.raises(EditError, match="<edit> needs one or more blocks"):
        parse_edit_blocks(body)


def test_exact_match_is_replaced_once():
    assert edit(CODE, block("    return a - b", "    return b - a")) == CODE.replace("a - b", "b - a")


def test_exact_match_may_span_lines_and_delete():
    assert edit(CODE, block("\n\ndef sub(a, b):\n    return a - b\n", "")) == "def add(a, b):\n    return a + b\n"


def test_trailing_whitespace_differences_are_tolerated():
    text = "x = 1   \ny = 2\t\nz = 3\n"
    # the model quoted the lines without their trailing blanks: no exact match, the tolerant one applies
    assert edit(text, block("x = 1\ny = 2", "x = 10\ny = 20")) == "x = 10\ny = 20\nz = 3\n"
    # and with blanks the file does not have
    assert edit("a\nb\nc\n", block("b  ", "B")) == "a\nB\nc\n"


def test_tolerant_match_on_the_last_line_keeps_a_missing_final_newline_missing():
    assert edit("a\nb", block("b ", "B")) == "a\nB"


def test_leading_whitespace_is_not_tolerated():
    with pytest.raises(EditError, match="does not match any lines in ops.py exactly"):
        edit(CODE, block("      return a + b", "return 0"))  # six spaces where the file has four


def test_an_ambiguous_match_is_an_error_not_a_guess():
    text = "total = 0\nprint(total)\ntotal = 0\n"
    with pytest.raises(EditError) as err:
        edit(text, block("total = 0", "total = 1"))
    assert str(err.value) == "block 1: SEARCH matches 2 places in ops.py; include more lines to make it unique"


def test_a_match_that_is_ambiguous_once_whitespace_is_ignored_is_an_error_too():
    text = "x = 1 \nprint(x)\nx = 1\t\n"
    with pytest.raises(EditError) as err:
        edit(text, block("x = 1  ", "x = 2"))  # matches neither line exactly, both without trailing blanks
    assert str(err.value) == ("block 1: SEARCH matches 2 places in ops.py (ignoring trailing whitespace); "
                              "include more lines to make it unique")


def test_no_match_names_the_block_and_shows_close_lines():
    with pytest.raises(EditError) as err:
        edit(CODE, block("def add(a, b):", "def add(a, b, c):"), block("    return a * b", "    return 0"))
    message = str(err.value)
    assert message.startswith("block 2: SEARCH does not match any lines in ops.py exactly")
    assert "lines that look close: " in message
    assert "return a + b" in message and "return a - b" in message


def test_no_match_without_anything_close_has_no_hint():
    with pytest.raises(EditError) as err:
        edit(CODE, block("zzzzzzzzzzzzzzzz", "y"))
    assert "look close" not in str(err.value)


def test_multiple_blocks_apply_in_order_each_to_the_result_of_the_last():
    out = edit(CODE, block("    return a + b", "    return a + b + 0"), block("    return a + b + 0", "    return add2(a, b)"),
               block("    return a - b", "    return b - a"))
    assert out == "def add(a, b):\n    return add2(a, b)\n\n\ndef sub(a, b):\n    return b - a\n"


def test_empty_search_writes_an_empty_file_only():
    assert edit("", "<<<<<<< SEARCH\n=======\nprint('hi')\n>>>>>>> REPLACE\n") == "print('hi')\n"
    with pytest.raises(EditError, match="block 1: an empty SEARCH only works on an empty file"):
        edit(CODE, "<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n")


# ---- through the tool: the file on disk -------------------------------------------------------------

@pytest.fixture
def tools(git_repo):
    sb = Sandbox(git_repo, mode="none")
    yield Tools(git_repo, sb, test_command="")
    sb.close()


def test_the_tool_applies_all_blocks_or_none(tools, git_repo):
    before = (git_repo / "calc.py").read_text()
    reply = ('<edit path="calc.py">\n' + block("def add(a, b):", "def add(a, b, c=0):")
             + block("    return a * b", "    return 0") + "</edit>")
    with pytest.raises(ToolError, match="block 2: SEARCH does not match"):
        tools.run(parse_action(reply))
    assert (git_repo / "calc.py").read_text() == before  # block 1 was not written on its own

    reply = '<edit path="calc.py">\n' + block("    return a + b", "    return a + b + 1") + "</edit>"
    assert tools.run(parse_action(reply)) == "edited calc.py: 1 block(s) applied"
    assert (git_repo / "calc.py").read_text() == "def add(a, b):\n    return a + b + 1\n"


def test_the_tool_reports_a_body_without_blocks_as_a_tool_error(tools):
    with pytest.raises(ToolError, match="<edit> needs one or more blocks"):
        tools.run(parse_action('<edit path="calc.py">replace add</edit>'))
