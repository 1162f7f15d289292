"""The action grammar (agent/actions.GRAMMAR) agrees with the parser, and constrained decoding keeps
a local model's reply inside it (runtime/grammar.py, llguidance)."""

from __future__ import annotations

import pytest

from learnagent.agent.actions import GRAMMAR, MAX_THOUGHT, FormatError, parse_action, reply_format
from learnagent.runtime import grammar

pytestmark = pytest.mark.skipif(not grammar.available(), reason="llguidance not installed")

VALID = ['I will look.\n<read path="a.py"/>', "<list/>", '<list path="src"/>', "<test/>", "<run>pytest -q</run>",
         '<write path="x.py">print(1)\n</write>', '<read path="a.py" start="1" end="20"/>',
         '<search pattern="def add"/>', "<finish>done</finish>",
         'ok\n<edit path="a.py">\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n</edit>',
         '<edit path="a.py">\n<<<<<<< SEARCH\n=======\nnew\n>>>>>>> REPLACE\n</edit>',
         "x" * MAX_THOUGHT + "<test/>"]
INVALID = ["", "just prose", "<run></run>", '<read path=""/>', "<finish>never closed", "<edit path=\"a.py\">x</edit>",
           "<unknown/>", "x" * (MAX_THOUGHT + 1) + "<test/>", "<test/> and more"]


@pytest.fixture(scope="module")
def compiled(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    return tok, grammar.for_tokenizer(GRAMMAR, tok, [eos], len(tok))


def accepts(compiled, text: str) -> bool:
    tok, g = compiled
    c = g.start()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return c.matcher.validate_tokens(ids) == len(ids) and c.matcher.consume_tokens(ids) and c.matcher.is_accepting()


@pytest.mark.parametrize("text", VALID)
def test_grammar_accepts_what_the_parser_accepts(compiled, text):
    assert parse_action(text).extra_actions == 0
    assert accepts(compiled, text)


@pytest.mark.parametrize("text", INVALID)
def test_grammar_refuses_malformed_replies_and_long_thinking(compiled, text):
    assert not accepts(compiled, text)


def test_parser_refuses_the_malformed_ones_too():
    for text in ["", "just prose", "<run></run>", '<read path=""/>', "<finish>never closed", "<unknown/>"]:
        with pytest.raises(FormatError):
            parse_action(text)


def test_the_random_tiny_model_writes_a_valid_action_under_the_grammar(tiny_model_dir):
    """Unconstrained, the random model never writes an action; constrained, greedy and sampled
    replies are actions the parser accepts, and decoding stops right after them."""
    from learnagent.runtime.engine_hf import TransformersModel

    chat = [{"role": "user", "content": "Fix the bug in add()."}]
    free = TransformersModel(tiny_model_dir, device="cpu", reply_format=reply_format(), constrain=False)
    with pytest.raises(FormatError):
        parse_action(free.complete(chat, max_tokens=120).text)
    for temperature, seed in [(0.0, 0), (1.0, 3), (1.0, 4)]:
        model = TransformersModel(tiny_model_dir, device="cpu", reply_format=reply_format(), temperature=temperature,
                                  seed=seed)
        out = model.complete(chat, max_tokens=400)
        assert out.extra["grammar"] == "llguidance" and "grammar_error" not in out.extra
        if out.extra["stop_reason"] == "reply_complete":
            parse_action(out.text)
        else:  # a body still open at the budget: a prefix of an action, never anything else
            tok = model.tokenizer
            ids = tok(out.text, add_special_tokens=False)["input_ids"]
            c = model.grammar.start()
            assert c.matcher.validate_tokens(ids) == len(ids), out.text
