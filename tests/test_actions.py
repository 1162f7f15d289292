"""The action parser in-process (mini-swe-agent style): every tool's tag, the model's thinking
before the action, malformed actions and the message the model gets back, extra actions."""

from __future__ import annotations

import pytest

from learnagent.agent.actions import SELF_CLOSING, TOOLS, FormatError, parse_action


@pytest.mark.parametrize("text, name, args, body", [
    ('<list/>', "list", {}, ""),
    ('<list path="src"/>', "list", {"path": "src"}, ""),
    ('<read path="a.py"/>', "read", {"path": "a.py"}, ""),
    ('<read path="a.py" start="10" end="20"/>', "read", {"path": "a.py", "start": "10", "end": "20"}, ""),
    ('<search pattern="def add" path="."/>', "search", {"pattern": "def add", "path": "."}, ""),
    ('<test/>', "test", {}, ""),
    ("<run>python -m pytest -q</run>", "run", {}, "python -m pytest -q"),
    ('<write path="new.py">\nx = 1\n</write>', "write", {"path": "new.py"}, "x = 1\n"),
    ('<edit path="a.py">\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</edit>', "edit", {"path": "a.py"},
     "<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"),
    ("<finish>added mul</finish>", "finish", {}, "added mul"),
])
def test_every_tool_parses(text, name, args, body):
    action = parse_action(text)
    assert (action.name, action.args, action.body, action.extra_actions) == (name, args, body, 0)


def test_the_parametrized_cases_cover_every_tool():
    names = {"list", "read", "search", "test", "run", "write", "edit", "finish"}
    assert names == set(TOOLS)


def test_thinking_before_the_action_is_skipped():
    text = ("The tests fail because add() returns a - b.\nI should read calc.py; maybe <b>bold</b> text too.\n\n"
            '<read path="calc.py"/>')
    action = parse_action(text)
    assert (action.name, action.args) == ("read", {"path": "calc.py"})


def test_tags_that_are_no_tool_are_text():
    action = parse_action('<thinking>look at <readme> and <lister/></thinking>\n<read path="README.md"/>')
    assert (action.name, action.args) == ("read", {"path": "README.md"})


def test_body_is_kept_verbatim_except_the_newline_after_the_tag():
    action = parse_action('<write path="a.py">\n\n  indented\n\ttab\n</write>')
    assert action.body == "\n  indented\n\ttab\n"


def test_attributes_allow_spaces_around_equals_and_in_values():
    action = parse_action('<search  pattern = "a b|c"  path="src dir" />')
    assert action.args == {"pattern": "a b|c", "path": "src dir"}


def test_self_closing_tools_need_no_slash():
    assert set(SELF_CLOSING) == {"list", "read", "search", "test"}
    assert parse_action('<read path="a.py">').name == "read"


def test_a_body_tool_written_self_closing_has_an_empty_body():
    action = parse_action("<finish/>")
    assert (action.name, action.body) == ("finish", "")


@pytest.mark.parametrize("text, message", [
    ("I will now fix it.", "no action found"),
    ("", "no action found"),
    ('<read file="a.py"/>', '<read> needs a path="..." attribute.'),
    ('<read path=""/>', '<read> needs a path="..." attribute.'),
    ("<search/>", '<search> needs a pattern="..." attribute.'),
    ("<edit>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</edit>", '<edit> needs a path="..." attribute.'),
    ("<write>x</write>", '<write> needs a path="..." attribute.'),
    ("<run>   </run>", "<run> needs a command between <run> and </run>."),
    ("<run/>", "<run> needs a command between <run> and </run>."),
    ("<run>ls", "<run> is not closed: end it with </run>."),
    ('<write path="a.py">x = 1', "<write> is not closed: end it with </write>."),
    ("<finish>done", "<finish> is not closed: end it with </finish>."),
])
def test_malformed_actions_say_how_to_fix_them(text, message):
    with pytest.raises(FormatError) as err:
        parse_action(text)
    assert message in str(err.value)


def test_no_action_message_shows_the_format():
    with pytest.raises(FormatError) as err:
        parse_action("thinking only")
    for example in ('<read path="FILE"/>', "<run>COMMAND</run>", "<test/>", "<finish>SUMMARY</finish>"):
        assert example in str(err.value)


def test_only_the_first_action_counts_and_the_rest_are_counted():
    action = parse_action('<read path="a.py"/>\n<read path="b.py"/>\n<list/>')
    assert (action.name, action.args, action.extra_actions) == ("read", {"path": "a.py"}, 2)


def test_a_body_action_first_then_another():
    action = parse_action("<run>ls</run>\n<finish>done</finish>")
    assert (action.name, action.body, action.extra_actions) == ("run", "ls", 1)


def test_tags_inside_a_body_are_its_content_not_further_actions():
    action = parse_action('<write path="USAGE.md">\nRun <test/> or <run>make</run> first.\n</write>')
    assert (action.name, action.extra_actions) == ("write", 0)
    assert action.body == "Run <test/> or <run>make</run> first.\n"


def test_an_unclosed_extra_action_does_not_spoil_the_first():
    action = parse_action('<read path="a.py"/>\nthen <run>python a.py')
    assert (action.name, action.args, action.extra_actions) == ("read", {"path": "a.py"}, 1)


def test_as_record_holds_args_and_body():
    assert parse_action('<read path="a.py" start="3"/>').as_record() == {"path": "a.py", "start": "3"}
    assert parse_action("<run>ls</run>").as_record() == {"body": "ls"}
