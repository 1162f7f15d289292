"""Generation stops at one complete action: the format's rule (`reply_end`, `restore_stop`), the
stream cutter every engine uses, and the transformers engine's stopping criterion on the tiny model."""

from __future__ import annotations

import pytest

from learnagent.agent.actions import (SELF_CLOSING, STOP_SEQUENCES, TOOLS, FormatError, parse_action, reply_end,
                                      reply_format, restore_stop)
from learnagent.runtime.model import ReplyFormat, StreamCut

EDIT = 'fix it\n<edit path="a.py">\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n</edit>'


@pytest.mark.parametrize("text, end", [
    ('I will look.\n<read path="a.py"/>', len('I will look.\n<read path="a.py"/>')),
    ('<read path="a.py"/>\n<finish>x</finish>', len('<read path="a.py"/>')),
    ("<test/> and more", len("<test/>")),
    ('<list path="src">', len('<list path="src">')),  # self-closing tools end at their ">" as parse_action reads them
    ("<run>pytest -q</run>\n<test/>", len("<run>pytest -q</run>")),
    (EDIT + "\n\n```", len(EDIT)),
    ("<finish>done</finish></finish>", len("<finish>done</finish>")),
    ("a <b>bold</b> word, then <finish>ok</finish>", len("a <b>bold</b> word, then <finish>ok</finish>")),
])
def test_reply_end_is_just_past_the_first_complete_action(text, end):
    assert reply_end(text) == end
    # what the engine keeps parses to the same first action as the whole text, with nothing after it
    kept = text[:end]
    assert parse_action(kept).name == parse_action(text).name
    assert parse_action(kept).extra_actions == 0


@pytest.mark.parametrize("text", ["", "thinking about it", "<run>pytest", '<edit path="a.py">\n<<<<<<< SEARCH\n',
                                  "<read path", "a <b>bold</b> word", "<finish>almost</finis"])
def test_reply_end_is_none_while_the_action_is_unfinished(text):
    assert reply_end(text) is None


def test_every_prefix_of_an_action_is_unfinished_until_its_last_character():
    for full in (EDIT, '<read path="a.py"/>', "<run>ls</run>", "<write path=\"n.py\">x = 1\n</write>"):
        ends = [reply_end(full[:i]) for i in range(len(full) + 1)]
        assert ends[:-1] == [None] * len(full) and ends[-1] == len(full)


def test_stop_sequences_close_every_action_with_a_body():
    assert sorted(STOP_SEQUENCES) == sorted(f"</{name}>" for name in TOOLS if name not in SELF_CLOSING)
    assert len(STOP_SEQUENCES) <= 4  # OpenAI's limit


@pytest.mark.parametrize("cut, restored", [
    ("<run>pytest -q", "<run>pytest -q</run>"),                       # the server dropped "</run>"
    ('<edit path="a.py">\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n', EDIT.split("\n", 1)[1]),
    ("<finish>done", "<finish>done</finish>"),
    ('<read path="a.py"/>', '<read path="a.py"/>'),                   # nothing to restore
    ("<run>ls</run>", "<run>ls</run>"),
    ("no action at all", "no action at all"),
])
def test_restore_stop_puts_back_the_closing_tag_a_server_dropped(cut, restored):
    assert restore_stop(cut) == restored


def test_stream_cut_stops_at_the_action_and_never_shows_more():
    shown = []
    cut = StreamCut(reply_format(), shown.append)
    pieces = ["I will ", "run it.\n<ru", "n>pytest -q</r", "un>\n<finish>", "extra</finish>"]
    done = [cut.add(p) for p in pieces]
    assert done == [False, False, False, True, True]
    assert cut.text == "I will run it.\n<run>pytest -q</run>" == "".join(shown)
    assert cut.complete


def test_stream_cut_without_a_format_passes_everything():
    shown = []
    cut = StreamCut(None, shown.append)
    assert not any(cut.add(p) for p in ["<run>a</run>", " more"])
    assert cut.text == "<run>a</run> more" == "".join(shown) and not cut.complete


# ---------------------------------------------------------------- the transformers engine


CHAT = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Fix the bug in add()."}]


def test_transformers_stops_as_soon_as_the_format_says_the_reply_is_complete(tiny_model_dir):
    """A rule that ends the reply after its 12th character: the engine stops generating there
    (fewer tokens than without the rule), keeps exactly that prefix of the same greedy text, and
    says why it stopped."""
    from learnagent.runtime.engine_hf import TransformersModel

    free = TransformersModel(tiny_model_dir, device="cpu").complete(CHAT, max_tokens=40)
    assert free.completion_tokens == 40 and len(free.text) > 12  # the random model never ends by itself
    rule = ReplyFormat(reply_end=lambda text: 12 if len(text) >= 12 else None)
    shown = []
    stopped = TransformersModel(tiny_model_dir, device="cpu", reply_format=rule).complete(CHAT, max_tokens=40,
                                                                                   on_text=shown.append)
    assert stopped.text == free.text[:12] == "".join(shown)
    assert stopped.extra["stop_reason"] == "reply_complete" and stopped.extra["engine"] == "transformers"
    assert stopped.completion_tokens < free.completion_tokens
    assert free.extra["stop_reason"] == "max_tokens"


@pytest.mark.skipif(not __import__("learnagent.runtime.grammar", fromlist=["x"]).available(),
                    reason="llguidance not installed")
def test_transformers_stops_after_the_first_action_even_when_the_model_would_write_two(tiny_model_dir):
    """A grammar that forces the random model to write two actions; the action format's own
    stop rule ends the reply after the first one."""
    from learnagent.runtime.engine_hf import TransformersModel

    two = 'start: "<run>ls</run>" "\\n<finish>and more text after the action</finish>"'
    forced = ReplyFormat(reply_end=lambda text: None, grammar=two)
    full = TransformersModel(tiny_model_dir, device="cpu", reply_format=forced).complete(CHAT, max_tokens=60)
    assert full.text == "<run>ls</run>\n<finish>and more text after the action</finish>"
    fmt = reply_format()
    one = TransformersModel(tiny_model_dir, device="cpu", reply_format=ReplyFormat(
        reply_end=fmt.reply_end, grammar=two)).complete(CHAT, max_tokens=60)
    assert one.text == "<run>ls</run>" and one.extra["stop_reason"] == "reply_complete"
    assert one.completion_tokens < full.completion_tokens
    assert parse_action(one.text).body == "ls"


def test_format_error_for_a_reply_cut_before_its_action_closes():
    with pytest.raises(FormatError):
        parse_action("<run>pytest -q")
