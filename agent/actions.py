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
