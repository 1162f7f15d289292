"""The edit applier behind `<edit>`: SEARCH/REPLACE blocks applied to a file's text.

Pure functions on strings (the tool in `tools.py` reads and writes the file), so each rule is
tested on hand-made text (tests/test_edits.py):
- a SEARCH that occurs exactly once is replaced;
- one that occurs more than once is an error that asks for more lines (never a guess);
- one that matches only when trailing whitespace is ignored is still applied (a common slip of
  small models), the replacement keeping the file's line structure;
- one that does not occur is an error that shows the lines that look closest;
- an empty SEARCH writes an empty file, and only an empty one;
- blocks apply in order, each to the result of the one before.
"""

from __future__ import annotations

import difflib
import re

_BLOCK = re.compile(r"<<<<<<< SEARCH\n(?P<search>.*?)\n?=======\n(?P<replace>.*?)\n?>>>>>>> REPLACE", re.S)
NO_BLOCKS = ("<edit> needs one or more blocks of the form\n<<<<<<< SEARCH\nexact lines from the file\n"
             "=======\nnew lines\n>>>>>>> REPLACE")


class EditError(Exception):
    """The blocks cannot be applied; the message tells the model why and how to fix it."""


def parse_edit_blocks(body: str) -> list[tuple[str, str]]:
    """The (search, replace) pairs of an `<edit>` body, in order."""
    blocks = [(m.group("search"), m.group("replace")) for m in _BLOCK.finditer(body)]
    if not blocks:
        raise EditError(NO_BLOCKS)
    return blocks


def apply_blocks(text: str, blocks: list[tuple[str, str]], name: str) -> str:
    """`text` with every block applied in order; all or nothing (an EditError means no change)."""
    for i, (search, replace) in enumerate(blocks, 1):
        text = apply_block(text, search, replace, i, name)
    return text


def apply_block(text: str, search: str, replace: str, index: int, name: str) -> str:
    if search == "":
        if text.strip():
            raise EditError(f"block {index}: an empty SEARCH only works on an empty file; quote the lines to replace")
        return replace + ("\n" if replace and not replace.endswith("\n") else "")
    count = text.count(search)
    if count == 1:
        return text.replace(search, replace, 1)
    if count > 1:
        raise EditError(f"block {index}: SEARCH matches {count} places in {name}; include more lines to make it unique")
    # tolerate differences in trailing whitespace, a common slip of small models
    lines, wanted = text.splitlines(keepends=True), search.splitlines()
    stripped = [l.rstrip() for l in wanted]
    starts = [start for start in range(len(lines) - len(wanted) + 1)
              if [l.rstrip() for l in lines[start:start + len(wanted)]] == stripped]
    if len(starts) > 1:  # ambiguous once whitespace is ignored: no guess either
        raise EditError(f"block {index}: SEARCH matches {len(starts)} places in {name} (ignoring trailing "
                        "whitespace); include more lines to make it unique")
    if starts:
        start = starts[0]
        new = replace + ("\n" if not replace.endswith("\n") and start + len(wanted) < len(lines) else "")
        return "".join(lines[:start]) + new + "".join(lines[start + len(wanted):])
    # lines cut to 300 characters: difflib on a 5 MB line would take minutes
    close = difflib.get_close_matches(wanted[0].strip()[:300], [l.strip()[:300] for l in lines], n=3, cutoff=0.5)
    hint = ("; lines that look close: " + " | ".join(close)) if close else ""
    raise EditError(f"block {index}: SEARCH does not match any lines in {name} exactly (read the file and quote "
                    f"the lines as they are){hint}")
