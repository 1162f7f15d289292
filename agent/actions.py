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

SELF_CLOSING = ("list", "read", "search", "test")
WITH_BODY = ("edit", "write", "run", "finish")
TOOLS = SELF_CLOSING + WITH_BODY
REQUIRED = {"read": ("path",), "search": ("pattern",), "edit": ("path",), "write": ("path",)}

_TAG = re.compile(r"<(?P<name>[a-z]+)\b(?P<attrs>[^<>]*?)(?P<selfclose>/?)>", re.S)
_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_BLOCK = re.compile(r"<<<<<<< SEARCH\n(?P<search>.*?)\n?=======\n(?P<replace>.*?)\n?>>>>>>> REPLACE", re.S)


class FormatError(Exception):
    """The response holds no valid action; the message tells the model how to fix it."""


@dataclass
class Action:
    name: str
    args: dict = field(default_factory=dict)
    body: str = ""
    extra_actions: int = 0  # further actions in the same response, which are not run

    def as_record(self) -> dict:
        record = dict(self.args)
        if self.body:
            record["body"] = self.body
        return record


def parse_action(text: str) -> Action:
    found = []
    for m in _TAG.finditer(text):
        name = m.group("name")
        if name not in TOOLS:
            continue
        attrs = dict(_ATTR.findall(m.group("attrs")))
        if m.group("selfclose") or name in SELF_CLOSING:
            found.append(Action(name, attrs))
            continue
        close = text.find(f"</{name}>", m.end())
        if close < 0:
            raise FormatError(f"<{name}> is not closed: end it with </{name}>.")
        found.append(Action(name, attrs, _strip_body(text[m.end():close])))
        if len(found) > 1:
            break
    if not found:
        raise FormatError(
            "no action found. End every reply with exactly one action, e.g. <read path=\"FILE\"/>, "
            "<edit path=\"FILE\">SEARCH/REPLACE blocks</edit>, <run>COMMAND</run>, <test/> or <finish>SUMMARY</finish>."
        )
    action = found[0]
    action.extra_actions = len(found) - 1
    for key in REQUIRED.get(action.name, ()):
        if not action.args.get(key):
            raise FormatError(f'<{action.name}> needs a {key}="..." attribute.')
    if action.name == "run" and not action.body.strip():
        raise FormatError("<run> needs a command between <run> and </run>.")
    return action


def _strip_body(body: str) -> str:
    # a body usually starts right after the tag's newline; keep everything else verbatim
    return body[1:] if body.startswith("\n") else body


def parse_edit_blocks(body: str) -> list[tuple[str, str]]:
    blocks = [(m.group("search"), m.group("replace")) for m in _BLOCK.finditer(body)]
    if not blocks:
        raise FormatError(
            "<edit> needs one or more blocks of the form\n<<<<<<< SEARCH\nexact lines from the file\n"
            "=======\nnew lines\n>>>>>>> REPLACE"
        )
    return blocks
