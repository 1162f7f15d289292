"""The repo map: a token-budgeted outline of the repository's most relevant definitions.

The algorithm is Aider's (https://aider.chat/2023/10/22/repomap.html), re-implemented:
1. tree-sitter tags: what each file defines and references (`repomap_tags`);
2. a graph file -> file, one edge per shared identifier (a reference in A to a definition in B),
   weighted by how often A uses it and how specific the name is;
3. personalised PageRank toward the files and identifiers the task mentions;
4. each file's rank is spread over the definitions its out-edges point at, giving ranked definitions;
5. a search over how many ranked definitions to show, so the rendered map fits the budget.
Departures, each commented where it happens: identifiers defined in very many files add no
edges; definitions the task names and the mentioned files' own outlines get a rank bonus (Aider
has those files in the chat already, we don't); the task's words reach names and file names by
stemmed sub-word, weighted (repomap_match: "progress bar" -> `ProgressBar`), not only exactly;
PageRank is a small numpy power iteration.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass
from pathlib import Path

from learnagent.agent.repomap_match import TermIndex
from learnagent.agent.repomap_tags import (
    Definition,
    FileTags,
    TagCache,
    blob_ids,
    list_source_files,
    parse_files,
)
from learnagent.core import home
from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository, key_of

MAX_LINE_CHARS = 100  # a long signature line is cut: the map is an outline, not the source
ELISION = "⋮"
# An identifier defined in more files than this (`__init__`, `forward`, `get`) adds no edges: it
# says little about which files belong together, and its definers x referencers edges would
# dominate build time on large repositories (thousands of files define `__init__`).
MAX_DEFINERS = 20


def default_count_tokens(text: str) -> int:
    return len(text) // 4


@dataclass
class BuildStats:
    files: int = 0  # source files considered
    parsed: int = 0  # files parsed by tree-sitter in the last build
    cache_hits: int = 0  # files whose tags came from the cache
    skipped: int = 0  # binary, huge, minified or unreadable files
    definitions: int = 0
    seconds: float = 0.0


@dataclass
class _Index:
    defines: dict[str, set[str]]  # identifier -> files defining it
    references: dict[str, dict[str, int]]  # identifier -> {file using it: number of uses}
    by_name: dict[tuple[str, str], list[Definition]]  # (file, identifier) -> its definitions
    terms: TermIndex  # stemmed sub-words of the defined names, for matching the task's words

    @classmethod
    def build(cls, all_tags: dict[str, FileTags]) -> _Index:
        defines: dict[str, set[str]] = defaultdict(set)
        references: dict[str, dict[str, int]] = defaultdict(dict)
        by_name: dict[tuple[str, str], list[Definition]] = defaultdict(list)
        for path, tags in all_tags.items():
            for d in tags.definitions:
                defines[d.name].add(path)
                by_name[(path, d.name)].append(d)
            for name, count in tags.references.items():
                references[name][path] = count
        if not references:  # nothing references anything: let definitions reference themselves
            references = {name: dict.fromkeys(paths, 1) for name, paths in defines.items()}
        return cls(dict(defines), dict(references), dict(by_name), TermIndex(defines))


class RepoMap:
    def __init__(self, root: Path, cache_dir: Path | None = None,
                 count_tokens: Callable[[str], int] | None = None, shared_with: Repository | None = None,
                 ignore: IgnoreRules | None = None):
        """`shared_with`: key the cache by file content (git blob ids) and share it with that
        repository (a core.repository.Repository) and all its worktrees. Each `do` runs in a fresh worktree whose files all have
        new mtimes, so an mtime cache would re-parse the whole repository every episode.
        `ignore`: the `.learnagentignore` rules the map's files obey (`do` passes the user's, rooted at
        the episode folder); default the folder's own file (`IgnoreRules.in_folder`)."""
        self.root = Path(root).resolve()
        self.ignore = ignore if ignore is not None else IgnoreRules.in_folder(self.root)
        cache_dir = Path(cache_dir) if cache_dir is not None else home.cache_home() / "repomap"
        self.content_keys = shared_with is not None
        if self.content_keys:
            self.cache_file = cache_dir / f"{shared_with.key}.blobs.sqlite"
        else:
            # an mtime cache of this folder alone (benchmarks, plain folders): keyed by its own path,
            # with no repository to look up (production runs pass shared_with)
            self.cache_file = cache_dir / f"{key_of(self.root)}.sqlite"
        self.count_tokens = count_tokens or default_count_tokens
        self.stats = BuildStats()
        # In-memory mirror of the cache: path -> (mtime_ns, size, tags or None if skipped).
        self._tags: dict[str, tuple[int, int, FileTags | None]] | None = None
        self._lines: dict[str, list[str]] = {}
        self._index: _Index | None = None  # identifier index, rebuilt only when tags change

    # ---- tags -------------------------------------------------------------------------------

    def tags(self) -> dict[str, FileTags]:
        """Tags of every source file, re-parsing only files whose (mtime, size) changed."""
        started = time.perf_counter()
        files = list_source_files(self.root, self.ignore)
        if self._tags is None:
            self._tags = self._load_cache()
        stats = BuildStats(files=len(files))
        stamps = blob_ids(self.root, files) if self.content_keys else None
        todo: list[tuple[str, int | str, int]] = []
        current = set()
        for rel in files:
            try:
                st = (self.root / rel).stat()
            except OSError:
                stats.skipped += 1
                continue
            current.add(rel)
            stamp = st.st_mtime_ns if stamps is None else stamps.get(rel, "")
            known = self._tags.get(rel)
            if known and known[0] == stamp and known[1] == st.st_size:
                stats.cache_hits += 1
                stats.skipped += known[2] is None
            else:
                todo.append((rel, stamp, st.st_size))
        fresh: list[tuple[str, int, int, str]] = []
        for (rel, mtime, size), tags in zip(todo, parse_files(self.root, [t[0] for t in todo])):
            stats.parsed += 1
            stats.skipped += tags is None
            self._tags[rel] = (mtime, size, tags)
            self._lines.pop(rel, None)
            fresh.append((rel, mtime, size, tags.to_json() if tags else ""))
        gone = [p for p in self._tags if p not in current]
        for p in gone:
            del self._tags[p]
        if fresh or gone:
            self._index = None
            self._save_cache(fresh, gone)
        result = {p: t for p, (_, _, t) in self._tags.items() if t is not None}
        stats.definitions = sum(len(t.definitions) for t in result.values())
        stats.seconds = time.perf_counter() - started
        self.stats = stats
        return result

    def _load_cache(self) -> dict[str, tuple[int, int, FileTags | None]]:
        """Cached tags; an unreadable or locked cache just means parsing everything again."""
        try:
            cache = TagCache(self.cache_file)
            try:
                rows = cache.load_all()
            finally:
                cache.close()
            return {p: (m, s, FileTags.from_json(t) if t else None) for p, (m, s, t) in rows.items()}
        except (sqlite3.Error, OSError, ValueError, KeyError, TypeError):
            return {}

    def _save_cache(self, fresh: list[tuple[str, int, int, str]], gone: list[str]) -> None:
        try:
            cache = TagCache(self.cache_file)
            try:
                cache.store(fresh)
                cache.forget(gone)
            finally:
                cache.close()
        except (sqlite3.Error, OSError):
            pass  # another agent holds the cache: these tags stay in memory only

    # ---- ranking ----------------------------------------------------------------------------

    def ranked(self, mentioned_files: Iterable[str] = (), mentioned_idents: Iterable[str] = (),
               ) -> list[tuple[str, Definition | None]]:
        """Definitions, most relevant first; then files without ranked definitions (as None).

        `mentioned_idents`: the task's words. Each defined name and file name they point at by
        sub-word (repomap_match: `ProgressBar` for "progress bar") gets a strength in (0, 1];
        a word that is a defined name exactly gets 1."""
        all_tags = self.tags()
        if self._index is None:
            self._index = _Index.build(all_tags)
        defines, references = self._index.defines, self._index.references
        mentioned_files = set(mentioned_files)
        strength, file_strength = self._index.terms.match(mentioned_idents, all_tags)

        # Edges (referencer, definer, identifier, weight).
        edges: list[tuple[str, str, str, float]] = []
        for name, definers in defines.items():
            if len(definers) > MAX_DEFINERS:
                continue
            if name not in references:
                # Unreferenced definitions still earn a little rank.
                edges += [(definer, definer, name, 0.1) for definer in definers]
                continue
            mul = _ident_weight(name, len(definers), strength.get(name, 0.0))
            for referencer, uses in references[name].items():
                weight = mul * math.sqrt(uses) * (50 if referencer in mentioned_files else 1)
                edges += [(referencer, definer, name, weight) for definer in definers]

        personal = _personalization(all_tags, mentioned_files, file_strength)
        # Beyond Aider: a file defining an identifier the task names is also a restart point.
        # A name defined in many files only counts where the task mentions the file too.
        named = [(path, name, s) for name, s in strength.items() for path in defines.get(name, ())
                 if len(defines[name]) <= MAX_DEFINERS or path in mentioned_files]
        for path, _, s in named:
            personal[path] = personal.get(path, 0) + s * 100 / len(all_tags)
        rank = pagerank(list(all_tags), edges, personal)

        # Spread each file's rank over the identifiers its out-edges point at.
        out_weight: dict[str, float] = defaultdict(float)
        for src, _, _, weight in edges:
            out_weight[src] += weight
        def_rank: dict[tuple[str, str], float] = defaultdict(float)
        for src, dst, name, weight in edges:
            def_rank[(dst, name)] += rank[src] * weight / out_weight[src]
        # A file's rank only reaches its definitions through others' references to them; a named
        # definition gets its file's whole rank as well, so the task's own targets show first.
        for path, name, s in named:
            def_rank[(path, name)] += rank[path] * s
        # Beyond Aider (whose chat files are already in the prompt): a mentioned file's own
        # outline is shown too, its rank shared among its definitions.
        for path in mentioned_files & all_tags.keys():
            names = {d.name for d in all_tags[path].definitions}
            for name in names:
                def_rank[(path, name)] += rank[path] / len(names)

        by_name = self._index.by_name
        result: list[tuple[str, Definition | None]] = []
        for key, _ in sorted(def_rank.items(), key=lambda kv: (-kv[1], kv[0])):
            result += [(key[0], d) for d in by_name.get(key, ())]
        shown = {path for path, _ in result}
        rest = sorted((p for p in all_tags if p not in shown), key=lambda p: (-rank.get(p, 0), p))
        return result + [(p, None) for p in rest]

    # ---- rendering --------------------------------------------------------------------------

    def render(self, max_tokens: int = 1024, mentioned_files: Iterable[str] = frozenset(),
               mentioned_idents: Iterable[str] = frozenset()) -> str:
        """The largest map of top-ranked definitions whose token count fits `max_tokens`."""
        if max_tokens <= 0:
            return ""
        ranked = self.ranked(mentioned_files, mentioned_idents)
        # Largest prefix of `ranked` that fits. Start near a typical size (~25 tokens a tag) and
        # double until the budget is exceeded, then bisect: unlike a plain bisection over all
        # tags (Aider), no probe renders tens of thousands of definitions on a large repository.
        best, best_tokens, lo, hi = "", 0, 1, len(ranked)
        middle = min(max(max_tokens // 25, 1), hi)
        overflowed = False
        while lo <= hi:
            text = self._render_tags(ranked[:middle])
            tokens = self.count_tokens(text)
            if tokens <= max_tokens:
                if tokens >= best_tokens:
                    best, best_tokens = text, tokens
                if tokens > max_tokens * 0.95:  # close enough: stop searching
                    break
                lo = middle + 1
            else:
                hi, overflowed = middle - 1, True
            middle = (lo + hi) // 2 if overflowed else min(middle * 2, hi)
        return best

    def _render_tags(self, tags: list[tuple[str, Definition | None]]) -> str:
        lines_by_file: dict[str, set[int]] = {}
        for path, d in tags:  # files appear in rank order; lines in source order
            wanted = lines_by_file.setdefault(path, set())
            if d is not None:
                wanted.update(d.scope)
                wanted.update(range(d.line, d.sig_end + 1))
        out = []
        for path, wanted in lines_by_file.items():
            if not wanted:
                out.append(f"{path}\n")
                continue
            source = self._file_lines(path)
            out.append(f"{path}:\n")
            prev = -1
            for n in sorted(wanted):
                if n >= len(source):
                    continue
                if n != prev + 1:
                    out.append(f"{ELISION}\n")
                out.append(f"│{source[n][:MAX_LINE_CHARS].rstrip()}\n")
                prev = n
            out.append(f"{ELISION}\n")
        return "".join(out)

    def _file_lines(self, path: str) -> list[str]:
        if path not in self._lines:
            try:
                text = (self.root / path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._lines[path] = text.splitlines()
        return self._lines[path]


def pagerank(nodes: list[str], edges: list[tuple[str, str, str, float]],
             personal: dict[str, float], alpha: float = 0.85, max_iter: int = 100,
             tol: float = 1e-6) -> dict[str, float]:
    """Weighted personalised PageRank by power iteration with numpy (networkx's needs scipy).

    Same definition as networkx.pagerank: random jumps and dangling nodes' rank go to the
    personalisation vector (uniform when it is empty).
    """
    import numpy as np

    if not nodes:
        return {}
    index = {node: i for i, node in enumerate(nodes)}
    n = len(nodes)
    src = np.fromiter((index[e[0]] for e in edges), dtype=np.int64, count=len(edges))
    dst = np.fromiter((index[e[1]] for e in edges), dtype=np.int64, count=len(edges))
    weight = np.fromiter((e[3] for e in edges), dtype=np.float64, count=len(edges))
    out = np.bincount(src, weights=weight, minlength=n)
    norm = weight / out[src] if len(edges) else weight
    dangling = out == 0
    p = np.array([personal.get(node, 0.0) for node in nodes])
    p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
    x = p.copy()
    for _ in range(max_iter):
        spread = np.bincount(dst, weights=x[src] * norm, minlength=n)
        new = alpha * (spread + x[dangling].sum() * p) + (1 - alpha) * p
        done = np.abs(new - x).sum() < n * tol
        x = new
        if done:
            break
    return {node: float(x[i]) for node, i in index.items()}


def _ident_weight(name: str, n_definers: int, mentioned: float) -> float:
    """How much an edge for this identifier counts: specific, mentioned names weigh more
    (`mentioned`: how strongly the task points at it, 0 to 1; 1 weighs 10 times)."""
    mul = 1.0
    is_snake = "_" in name and any(c.isalpha() for c in name)
    is_camel = any(c.isupper() for c in name) and any(c.islower() for c in name)
    if mentioned:
        mul *= 1 + 9 * mentioned
    if (is_snake or is_camel) and len(name) >= 8:
        mul *= 10
    if name.startswith("_"):
        mul *= 0.1
    if n_definers > 5:  # defined everywhere (`__init__`, `run`): says little about coupling
        mul *= 0.1
    return mul


def _personalization(files: Iterable[str], mentioned_files: set[str],
                     file_strength: dict[str, float]) -> dict[str, float]:
    """PageRank restarts at mentioned files, and at files whose name the task's words point at."""
    files = list(files)
    if not files:
        return {}
    boost = 100 / len(files)
    personal = {}
    for path in files:
        if path in mentioned_files:
            personal[path] = personal.get(path, 0) + boost
        if path in file_strength:
            personal[path] = personal.get(path, 0) + boost * file_strength[path]
    return personal


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATHLIKE = re.compile(r"[\w./-]+")


def mentions_from_text(text: str, files: list[str]) -> tuple[set[str], KeysView[str]]:
    """(repo files, identifiers) that a task text mentions; the words keep the task's order (a
    set-like view), since adjacent words form compounds ("progress bar" -> `ProgressBar`).

    A file is mentioned by its repo-relative path, or by its bare file name when no other file
    shares that name. Identifiers are the text's words of 3+ characters outside file paths
    (a path's folders, e.g. `models/`, would otherwise restart PageRank at every file in them).
    Plain English words are harmless: they rarely name a definition or a folder.
    """
    tokens = {t.strip("./-") for t in _PATHLIKE.findall(text)} | set(_PATHLIKE.findall(text))
    basenames = Counter(f.rsplit("/", 1)[-1] for f in files)
    mentioned_files = set()
    for f in files:
        base = f.rsplit("/", 1)[-1]
        if f in tokens or f in text or (basenames[base] == 1 and "." in base and base in tokens):
            mentioned_files.add(f)
    prose = " ".join(t for t in _PATHLIKE.findall(text) if "/" not in t.strip("./-"))
    idents = dict.fromkeys(w for w in _WORD.findall(prose) if len(w) >= 3).keys()
    return mentioned_files, idents
