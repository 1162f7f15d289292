"""The tool table: the one place that says which tools the agent has.

Each row gives a tool's tag name, its attributes, whether it is self-closing or has a body, its line
in the system prompt, and the handler that runs it. Everything else is derived from this table:
- the parser's tags, required attributes and required bodies (`agent/actions.py`: TOOLS,
  SELF_CLOSING, REQUIRED, _TAG);
- the dispatch (`Tools.run` calls the handler of the row the parser found);
- the tool section of the system prompt (`prompt_section`, used by `agent/prompts.py`).

Adding a tool is adding a row and its handler; tests/test_tool_table.py checks that every row
parses from its own prompt line, reaches its handler, and that the prompt lists every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from learnagent.agent.tools import Tools

if TYPE_CHECKING:
    from learnagent.agent.actions import Action

USAGE_WIDTH = 42  # the prompt's description column starts after this many characters and two spaces


@dataclass(frozen=True)
class Attr:
    name: str
    value: str  # the placeholder the prompt shows, e.g. FILE
    required: bool = False
    in_usage: bool = True  # shown in the usage part of the prompt line (else the description tells it)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    attrs: tuple[Attr, ...]
    body: str | None  # None: self-closing <name .../>; else what the prompt shows between the tags
    description: str  # the prompt line's text; "{test_hint}" is filled in by prompt_section
    handler: Callable[[Tools, "Action"], str]
    body_required: bool = False  # an empty body is a format error (the model sees it and can fix it)

    @property
    def self_closing(self) -> bool:
        return self.body is None

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attrs if a.required)

    def usage(self) -> str:
        """The tag as the prompt shows it, e.g. <read path="FILE"/>."""
        attrs = "".join(f' {a.name}="{a.value}"' for a in self.attrs if a.in_usage)
        if self.self_closing:
            return f"<{self.name}{attrs}/>"
        return f"<{self.name}{attrs}>{self.body}</{self.name}>"

    def prompt_line(self, test_hint: str = "") -> str:
        *head, last = self.usage().split("\n")
        return "\n".join(head + [f"{last:<{USAGE_WIDTH}}  {self.description.format(test_hint=test_hint)}"])


EDIT_BODY = "\n<<<<<<< SEARCH\nexact lines copied from the file\n=======\nthe new lines\n>>>>>>> REPLACE\n"

TABLE: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec("list", attrs=(Attr("path", "DIR"),), body=None,
             description="list files", handler=Tools.tool_list),
    ToolSpec("read", attrs=(Attr("path", "FILE", required=True), Attr("start", "N", in_usage=False),
                            Attr("end", "M", in_usage=False)), body=None,
             description='read a file (add start="N" end="M" for a range)', handler=Tools.tool_read),
    ToolSpec("search", attrs=(Attr("pattern", "REGEX", required=True), Attr("path", "DIR")), body=None,
             description="search file contents", handler=Tools.tool_search),
    ToolSpec("edit", attrs=(Attr("path", "FILE", required=True),), body=EDIT_BODY,
             description="change a file (one or more SEARCH/REPLACE blocks)", handler=Tools.tool_edit),
    ToolSpec("write", attrs=(Attr("path", "FILE", required=True),), body="whole new content",
             description="create or overwrite a file", handler=Tools.tool_write),
    ToolSpec("run", attrs=(), body="COMMAND", body_required=True,
             description="run a shell command in the repository", handler=Tools.tool_run),
    ToolSpec("test", attrs=(), body=None,
             description="run the repository's tests{test_hint}", handler=Tools.tool_test),
    ToolSpec("finish", attrs=(), body="SUMMARY",
             description="stop when the task is done", handler=Tools.tool_finish),
)}


def prompt_section(test_hint: str = "") -> str:
    """The system prompt's list of tools, one row each, in the table's order."""
    return "\n".join(spec.prompt_line(test_hint) for spec in TABLE.values())
