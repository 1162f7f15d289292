"""Which identifiers and files a task's words point at, by sub-word.

A task says "look at the progress bar"; the code says `ProgressBar`, `progressbar` and
`_termui_impl.py`. Exact identifiers alone miss all of them, and `def bar` in a test matches
best. Here names and task words are both cut into stemmed sub-words:

- sub-words: camelCase, snake_case, digits (`HTTPServer` -> http, server; `_termui_impl` ->
  termui, impl);
- stems: a light suffix stripper (plural -s/-es/-ies, -ing, -ed, final -e; a doubled final
  consonant), applied to both sides, so "bars", "rendering" and "parsed" meet `bar`, `render`,
  `parse`;
- compounds: adjacent task words joined ("progress bar" -> progressbar) meet a name written as
  one word (`progressbar`) or in parts (`ProgressBar`);
- weights: each sub-word's inverse document frequency over the repository's identifiers, times
  the share of the name's sub-words the task covers. `ProgressBar` (two rare words, all covered)
  outweighs `bar` (one) and `bar_template` (half covered); `get` and `self` count for little;
  English function words and generic task verbs ("look", "fix", "add") are not terms at all.

`TermIndex.match` returns strengths in (0, 1], relative to the best match: the repo map weighs
its PageRank restarts and edges with them. A word written as only code writes it (`round_cents`,
`ProgressBar`) that is exactly a defined name, or a word that is exactly a file's base name,
keeps full strength, as before.
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Iterable

MIN_STRENGTH = 0.25  # matches weaker than this share of the best one are dropped
MAX_MATCHES = 40  # names (and files) kept per task
_SUBWORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
STOPWORDS = frozenset("""
a an the and or but not nor no yes to of in on at by for with from into onto over under out up down off
as is are was were be been being do does did done doing have has had having it its it's this that these
those there here when where which while what who whom whose how why then than so if else also only just
very more most less least all any some each every both either neither other others such same own too
via per about after before again once should would could can cannot will may might must need needs
shall let lets make makes made making look looks see sure fix fixes fixed fixing add adds added adding
update updates updated updating change changes changed changing use uses used using support supports
allow allows handle handles now still instead like etc don doesn isn aren wasn won whether please
thing things way ways issue issues work works working properly correctly case cases
""".split())


def subwords(name: str) -> list[str]:
    return [w.lower() for w in _SUBWORD.findall(name)]


@functools.lru_cache(maxsize=65536)  # a repository's names share a small vocabulary of sub-words
def stem(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[:-len(suffix)]
            if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "aeioulsz":
                w = w[:-1]  # wrapp(ing) -> wrap
            break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def code_like(word: str) -> bool:
    """An identifier as only code writes it (snake_case, camelCase, digits): `round_cents`,
    `ProgressBar`. A plain word ("bar", "progress", "Store") may name a definition by chance, so
    it is matched by sub-word like any other word, not taken as that exact name."""
    return "_" in word.strip("_") or any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:])


def name_stems(name: str) -> list[str]:
    return [stem(w) for w in subwords(name)]


def task_terms(words: Iterable[str]) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """(the task's stems in order, stopwords dropped; {compound: its stems} for 2-3 adjacent stems)."""
    seq: list[str] = []
    for word in words:
        for part in subwords(word):
            if len(part) >= 3 and part not in STOPWORDS and not part.isdigit():
                seq.append(stem(part))
    compounds = {"".join(seq[i:i + n]): tuple(seq[i:i + n]) for n in (2, 3) for i in range(len(seq) - n + 1)}
    return seq, compounds



class TermIndex:
    """Stemmed sub-words of a repository's defined names (built once per set of tags)."""

    def __init__(self, names: Iterable[str]):
        self.stems: dict[str, tuple[str, ...]] = {}
        self.by_stem: dict[str, set[str]] = defaultdict(set)
        self.by_joined: dict[str, set[str]] = defaultdict(set)
        for name in names:
            stems = tuple(s for s in name_stems(name) if s)
            if not stems:
                continue
            self.stems[name] = stems
            for s in set(stems):
                self.by_stem[s].add(name)
            self.by_joined["".join(stems)].add(name)
        self._path_stems: dict[str, tuple[str, ...]] = {}
        total = max(len(self.stems), 1)
        self.idf = {s: math.log(1 + total / len(having)) for s, having in self.by_stem.items()}
        self._unseen_idf = math.log(1 + total)

    def weight(self, term: str) -> float:
        return self.idf.get(term, self._unseen_idf)

    def _score(self, stems: tuple[str, ...], terms: set[str], compounds: dict[str, tuple[str, ...]],
               phrases: list[set[str]] | None = None) -> float:
        """How strongly the task points at a name with these stems. `phrases`: the task's compounds
        that some name matched whole; a name matching only part of one ("bar" of "progress bar")
        is a false friend and counts half."""
        unique = set(stems)
        if len(stems) == 1 and stems[0] in compounds:  # `progressbar` for "progress bar"
            return 2 * self.weight(stems[0])
        matched = unique & terms
        if not matched:
            return 0.0
        score = sum(self.weight(s) for s in matched) * len(matched) / len(unique)
        if len(unique) > 1 and "".join(stems) in compounds:  # the words in the name's order
            score *= 1.5
        elif phrases and any(matched < phrase for phrase in phrases):
            score *= 0.5
        return score

    def match(self, words: Iterable[str], paths: Iterable[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
        """({name: strength}, {path: strength}) for the task's words; strengths relative to the best."""
        words = list(words)
        seq, compounds = task_terms(words)
        terms = set(seq)
        exact = {w for w in words if w in self.stems and code_like(w)}
        scores: dict[str, float] = {}
        candidates = set().union(*(self.by_stem.get(t, ()) for t in terms)) if terms else set()
        phrases = []
        for joined, parts in compounds.items():
            if self.by_joined.get(joined):
                candidates |= self.by_joined[joined]
                phrases.append(set(parts))
        for name in candidates:
            s = self._score(self.stems[name], terms, compounds, phrases)
            if s > 0:
                scores[name] = s
        file_scores: dict[str, float] = {}
        phrases = phrases if terms else []
        named_files: set[str] = set()
        word_set = set(words)
        for path in paths if terms else ():
            base = path.rsplit("/", 1)[-1].split(".", 1)[0]
            if base in word_set:
                named_files.add(path)  # the task names the module (`formatting`)
            stems = self._path_stems.get(path)
            if stems is None:
                stems = self._path_stems[path] = tuple(s for s in name_stems(base) if s)
            s = self._score(stems, terms, compounds, phrases) if stems else 0.0
            if s > 0:
                file_scores[path] = s
        best = max([*scores.values(), *file_scores.values()], default=0.0)
        names = _strongest(scores, best)
        names.update(dict.fromkeys(exact, 1.0))
        files = _strongest(file_scores, best)
        files.update(dict.fromkeys(named_files, 1.0))
        return names, files


def _strongest(scores: dict[str, float], best: float) -> dict[str, float]:
    if best <= 0:
        return {}
    kept = sorted(((s / best, k) for k, s in scores.items() if s / best >= MIN_STRENGTH), reverse=True)
    return {k: round(s, 4) for s, k in kept[:MAX_MATCHES]}
