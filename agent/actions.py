"""The action format the model writes, and its parser.

One action per response, as a small XML-like tag; anything before it is the model's thinking:

    <list path="src"/>                  <read path="a.py" start="1" end="80"/>
    <search pattern="def add" path="."/> <test/>
    <run>python -m pytest -q tests/test_a.py</run>
    <write path="new.py">...whole file...</write>
    <edit path="a.py">
    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE
    </edit>
    <finish>what was done</finish>

Plain tags survive small models far better than JSON tool calls, and the same format works for
every backend. A malformed action raises FormatError, whose message the model sees and can fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from learnagent.agent.tooltable import TABLE, ToolSpec

# Derived from the tool table (agent/tooltable.py), the one place that defines the tools.
TOOLS = tuple(TABLE)
SELF_CLOSING = tuple(name for name, spec in TABLE.items() if spec.self_closing)
WITH_BODY = tuple(name for name, spec in TABLE.items() if not spec.self_closing)
REQUIRED = {name: spec.required for name, spec in TABLE.items() if spec.required}

_TAG = re.compile(rf"<(?P<name>{'|'.join(TOOLS)})\b(?P<attrs>[^<>]*?)(?P<selfclose>/?)>", re.S)
_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


class FormatError(Exception):
    """The response holds no valid action; the message tells the model how to fix it."""


@dataclass
class Action:
    name: str
    args: dict = field(default_factory=dict)
    body: str = ""
    extra_actions: int = 0  # further actions in the same response, which are not run

    @property
    def spec(self) -> ToolSpec:
        """This action's row of the tool table: its handler, attributes and body rules."""
        return TABLE[self.name]

    def as_record(self) -> dict:
        record = dict(self.args)
        if self.body:
            record["body"] = self.body
        return record


def parse_action(text: str) -> Action:
    """The first action in `text`; any later ones are only counted (`extra_actions`), never run.
    Tags inside an action's body are its content (a <write> of a file that mentions <test/>)."""
    found: list[Action] = []
    pos = 0
    while m := _TAG.search(text, pos):
        name, pos = m.group("name"), m.end()
        attrs = dict(_ATTR.findall(m.group("attrs")))
        if m.group("selfclose") or name in SELF_CLOSING:
            found.append(Action(name, attrs))
            continue
        close = text.find(f"</{name}>", m.end())
        if close < 0:
            if found:  # an unfinished extra action is ignored like a finished one
                found.append(Action(name, attrs))
                break
            raise FormatError(f"<{name}> is not closed: end it with </{name}>.")
        found.append(Action(name, attrs, _strip_body(text[m.end():close])))
        pos = close + len(f"</{name}>")
    if not found:
        raise FormatError(
            "no action found. End every reply with exactly one action, e.g. <read path=\"FILE\"/>, "
            "<edit path=\"FILE\">SEARCH/REPLACE blocks</edit>, <run>COMMAND</run>, <test/> or <finish>SUMMARY</finish>."
        )
    action = found[0]
    action.extra_actions = len(found) - 1
    spec = action.spec
    for key in spec.required:
        if not action.args.get(key):
            raise FormatError(f'<{action.name}> needs a {key}="..." attribute.')
    if spec.body_required and not action.body.strip():
        raise FormatError(f"<{action.name}> needs a {spec.body.lower()} between <{action.name}> and </{action.name}>.")
    return action


def _strip_body(body: str) -> str:
    # a body usually starts right after the tag's newline; keep everything else verbatim
    return body[1:] if body.startswith("\n") else body


# ---------------------------------------------------------------- what engines need to know

def reply_end(text: str) -> int | None:
    """Index just past the first complete action in `text`, or None while it is unfinished.

    The same reading as `parse_action`: the first tag naming a tool starts the action; a
    self-closing tool ends at its `>`, a tool with a body at its closing tag. Engines stop
    generating there (a 135M model otherwise goes on for hundreds of tokens after the action).
    """
    for m in _TAG.finditer(text):
        name = m.group("name")
        if name not in TOOLS:
            continue
        if m.group("selfclose") or name in SELF_CLOSING:
            return m.end()
        close = text.find(f"</{name}>", m.end())
        return None if close < 0 else close + len(f"</{name}>")
    return None


STOP_SEQUENCES = tuple(f"</{name}>" for name in WITH_BODY)  # OpenAI takes at most 4


def restore_stop(text: str) -> str:
    """`text` with the closing tag a server's stop sequence removed put back: when the first
    action has a body and is not closed, close it."""
    for m in _TAG.finditer(text):
        name = m.group("name")
        if name not in TOOLS:
            continue
        if m.group("selfclose") or name in SELF_CLOSING or text.find(f"</{name}>", m.end()) >= 0:
            return text
        return text + f"</{name}>"
    return text


# The same format as a grammar (Lark, llguidance's dialect): thinking without "<", at most
# MAX_THOUGHT characters, then one action that `parse_action` accepts, then the end of the reply.
# The bound is what makes every constrained reply an action: unbounded, SmolLM2 thinks past any
# token budget (bench/bench_first_action.py: 80 tokens of prose, no action). Bodies are lazy
# terminals: they end at the first closing tag, exactly where `parse_action` ends them.
MAX_THOUGHT = 200
GRAMMAR = r"""
start: THOUGHT action
THOUGHT: /[^<]{0,%d}/
action: list | read | search | test | run | write | edit | finish
list: "<list" (" path=" VALUE)? "/>"
read: "<read path=" NONEMPTY (" start=" NUMBER " end=" NUMBER)? "/>"
search: "<search pattern=" NONEMPTY (" path=" VALUE)? "/>"
test: "<test/>"
run: "<run>" run_body
run_body[lazy]: /[ \t\n]*[^ \t\n<](.|\n)*<\/run>/
write: "<write path=" NONEMPTY ">" write_body
write_body[lazy]: /(.|\n)*<\/write>/
edit: "<edit path=" NONEMPTY ">\n" block+ "</edit>"
block: "<<<<<<< SEARCH\n" search_part replace_part
search_part[lazy]: /((.|\n)*\n)?=======\n/
replace_part[lazy]: /((.|\n)*\n)?>>>>>>> REPLACE\n/
finish: "<finish>" finish_body
finish_body[lazy]: /(.|\n)*<\/finish>/
VALUE: /"[^"<>\n]*"/
NONEMPTY: /"[^"<>\n]+"/
NUMBER: /"[0-9]{1,6}"/
""" % MAX_THOUGHT


def reply_format():
    """The action format as the runtime's engines take it (stop rule, stop sequences, grammar)."""
    from learnagent.runtime.model import ReplyFormat

    return ReplyFormat(reply_end=reply_end, stop_sequences=STOP_SEQUENCES, restore_stop=restore_stop,
                       grammar=GRAMMAR, name="action")
