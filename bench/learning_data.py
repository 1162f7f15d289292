"""Training data for bench/bench_learning.py: code-continuation pairs mined from the convention
repository's files (a local stand-in for learn-measure's miner until it lands).

Each training file is cut before every top-level statement after its first line (the imports,
the logger, the error class, each function): x = the file up to the cut (raw text, ending on
its last non-blank character, after a `# path` first line as the probes have), target = the line breaks and the next lines as the user wrote them, c = the conventions file + the most similar OTHER file
of the repository (never the file itself: its own continuation would be copied, not learnt).
"""

from __future__ import annotations

import re

import convention_repo as cr
from learning_eval import retrieved_context
from learnagent.learning.pairs import Pair

TARGET_LINES = 16


def cuts(source: str) -> list[int]:
    """Line numbers where a top-level statement starts (decorators start their function)."""
    lines = source.split("\n")
    out = []
    for i, line in enumerate(lines):
        if i == 0 or not line or line[0].isspace() or line.startswith(")"):
            continue
        if i > 0 and lines[i - 1].startswith("@"):
            continue  # the decorator above already started this block
        if re.match(r"(from|import)\s", line) and i > 1 and re.match(r"(from|import)\s", lines[i - 1]):
            continue  # one cut per import block
        out.append(i)
    return out


def code_pairs(files: dict[str, str] | None = None, target_lines: int = TARGET_LINES) -> list[Pair]:
    files = files if files is not None else {p: s for p, s in cr.final_train_sources().items() if p.endswith(".py")}
    pairs = []
    for path, source in files.items():
        others = {p: s for p, s in files.items() if p != path}
        context = retrieved_context(source, others)
        lines = source.split("\n")
        for cut in cuts(source):
            # x ends on the last non-blank character before the cut and the target starts with the
            # line breaks: cut after "\n\n", x would end in a merged "\n\n" token that in a file
            # only precedes more whitespace (see convention_repo._probe_prompts)
            before = cr.path_header(path) + "\n".join(lines[:cut])
            prompt = before.rstrip()
            target = before[len(prompt):] + "\n" + "\n".join(lines[cut:cut + target_lines])
            if target.strip():
                pairs.append(Pair(f"{path}@{cut}", prompt, context, target + "\n"))
    return pairs


_BROKEN = [
    re.compile(r"^import logging|\bprint\(", re.M),  # logs through tally.log only
    re.compile(r"raise (ValueError|Exception)\b|^class \w+\((Exception|ValueError)\)", re.M),  # TallyError family
    re.compile(r"(?<!@audited\n)^def [a-z]\w*\(", re.M),  # @audited on every public function
    re.compile(r"^def \w+\([^)]*\b(amount|price|total|fee|balance|cost)s?\s*[:,)]", re.M),  # money in *_cents
]


def accept(pair: Pair, text: str) -> bool:
    """The repository's own checks on a teacher sample (what it writes after the cut): refused if it
    breaks a convention the real file keeps there (the helpers, e.g. tally/log.py, may import
    logging). Read on the text, since a sample of a few lines rarely parses alone."""
    tail = pair.prompt[-64:]
    rules = [rx for rx in _BROKEN if not rx.search(tail + (pair.target or ""))]  # none the real file breaks
    return not any(m.end() > len(tail) for rx in rules for m in rx.finditer(tail + text))
