"""Retrieve the repository files most similar to the code being written: BM25 over identifiers.

The context that shows a model how this repository writes code (learning/code_pairs.py) is its
conventions files plus the OTHER files most like the one at hand. No oracle: the query is only
what a user would have in front of them — the file's path and the code before the cut — never
the code being predicted.

Terms are identifiers and their sub-words: `get_logger` gives `get_logger`, `get`, `logger`;
`parseHTTPResponse` gives `parsehttpresponse`, `parse`, `http`, `response`. Keywords of common
languages carry no signal and are dropped. A file's path counts as `PATH_WEIGHT` occurrences of
its parts, so `from shop.money import to_cents` in the query finds `shop/money.py`: import
proximity falls out of the same score. Pure Python; an index of a few hundred files builds in
milliseconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUBWORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
PATH_WEIGHT = 3
STOPWORDS = frozenset("""
and as assert async await break case catch class const continue def del elif else except export extends false
finally fn for from func function if impl import in is let match mut new nil none not null or pass pub raise
return self static struct super switch this throw true try type use var void while with yield int str bool
float string the to of a an it be on at by
""".split())


def terms(text: str) -> list[str]:
    """Identifiers (lower-cased) and their sub-words, keywords and one-letter parts dropped."""
    out = []
    for ident in _IDENT.findall(text):
        low = ident.lower()
        parts = [p.lower() for p in _SUBWORD.findall(ident)]
        for term in ([low] if len(parts) != 1 else []) + parts:
            if len(term) > 1 and term not in STOPWORDS:
                out.append(term)
    return out


def path_terms(path: str) -> list[str]:
    return terms(re.sub(r"[/.\-]", " ", path))


@dataclass(frozen=True)
class Hit:
    path: str
    score: float


class BM25Index:
    """Okapi BM25 (k1 = 1.2, b = 0.75) over {path: text}."""

    def __init__(self, files: dict[str, str], *, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.paths = sorted(files)
        self.tf: dict[str, Counter] = {}
        for path in self.paths:
            counts = Counter(terms(files[path]))
            for term in path_terms(path):
                counts[term] += PATH_WEIGHT
            self.tf[path] = counts
        self.length = {p: sum(c.values()) for p, c in self.tf.items()}
        self.avg_length = sum(self.length.values()) / len(self.paths) if self.paths else 0.0
        self.postings: dict[str, list[tuple[str, int]]] = {}
        for path, counts in self.tf.items():
            for term, f in counts.items():
                self.postings.setdefault(term, []).append((path, f))
        n = len(self.paths)
        self.idf = {term: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for term, p in self.postings.items()}
        self.norm = {p: k1 * (1 - b + b * self.length[p] / (self.avg_length or 1)) for p in self.paths}

    def scores(self, query: str, *, path: str | None = None) -> dict[str, float]:
        """BM25 score of every file for `query` (+ the parts of `path`, the file being written)."""
        out = dict.fromkeys(self.paths, 0.0)
        for term in set(terms(query) + (path_terms(path) if path else [])):
            for p, f in self.postings.get(term, ()):
                out[p] += self.idf[term] * f * (self.k1 + 1) / (f + self.norm[p])
        return out

    def search(self, query: str, k: int, *, path: str | None = None, exclude=()) -> list[Hit]:
        """The `k` best files with a positive score, best first (ties by path); `exclude` never comes back."""
        excluded = set(exclude) | ({path} if path else set())
        ranked = sorted(((s, p) for p, s in self.scores(query, path=path).items() if s > 0 and p not in excluded),
                        key=lambda sp: (-sp[0], sp[1]))
        return [Hit(p, s) for s, p in ranked[:k]]


def path_header(path: str) -> str:
    """A file's first line wherever a model reads it as raw text (contexts, samples, held-out code):
    its path, as an editor or an agent knows it. Measured on SmolLM2 (learn-method, issue 9): without
    it, base + context skipped the imports of a new module; with it, it wrote them."""
    return f"# {path}\n"


def fit_context(conventions: str, files: list[tuple[str, str]], max_chars: int, *,
                conventions_share: float = 0.25, min_file_chars: int = 200) -> tuple[str, list[str]]:
    """Conventions first (at most `conventions_share` of the budget), then `files` (best first),
    each as `path_header(PATH)` and its text, until `max_chars` is used; the last may be cut at a line.

    Files go in REVERSE order of relevance, so the most similar one ends next to the prompt (a
    causal model reads what is nearest best). Returns the text and the paths included.
    """
    conventions = conventions_block(conventions, max_chars, conventions_share)
    used = len(conventions) + 2 if conventions else 0
    chosen: list[tuple[str, str]] = []
    for path, text in files:
        room = max_chars - used
        block = path_header(path) + text.strip()
        if len(block) > room:
            if room < min_file_chars:
                break
            block = _clip_lines(block, room - 2)
        chosen.append((path, block))
        used += len(block) + 2
    parts = ([conventions] if conventions else []) + [block for _path, block in reversed(chosen)]
    return "\n\n".join(parts), [path for path, _block in chosen]


def conventions_block(conventions: str, max_chars: int, share: float = 0.25) -> str:
    """The conventions as `fit_context` puts them first in every context (the same for all: a
    scorer can encode it once)."""
    return _clip_lines(conventions.strip(), int(max_chars * share))


def _clip_lines(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a line end (never mid-line unless one line is longer)."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut if cut > 0 else max(limit, 0)]
