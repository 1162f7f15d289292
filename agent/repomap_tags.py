"""Tag extraction for the repo map: which identifiers each source file defines and references.

Each language has tree-sitter queries in `agent/queries/*.scm` (written for this project) with
three kinds of captures:
- `@name.definition.<kind>` + `@definition.<kind>`: a definition's name and its whole node;
- `@name.reference.<kind>`: a use of an identifier that may be defined in another file;
- `@scope`: a block (Rust `impl`) whose header line is shown above the definitions inside it.

Tags are cached per file in SQLite keyed by (path, mtime_ns, size), so a rebuild only re-parses
files that changed. Anything that can't be parsed (binary, huge, minified, unknown language,
unreadable) is skipped: the repo map is a hint, it must never stop the agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from learnagent.core.errors import NotAGitRepo
from learnagent.core.ignore import IgnoreRules

QUERY_DIR = Path(__file__).parent / "queries"

# Which .scm files make up each language's query; JS/TS share most node names.
LANGUAGE_QUERIES: dict[str, tuple[str, ...]] = {
    "python": ("python",),
    "javascript": ("ecmascript", "javascript", "jsx"),
    "typescript": ("ecmascript", "typescript"),
    "tsx": ("ecmascript", "typescript", "jsx"),
    "go": ("go",),
    "rust": ("rust",),
    "java": ("java",),
}

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}

VENDORED_DIRS = frozenset({"node_modules", "vendor", "third_party", ".git"})
MAX_FILE_BYTES = 1_000_000
SIGNATURE_MAX_LINES = 4  # a multi-line signature is shown up to this many lines
TAGS_FORMAT = 1  # bump when extraction changes without a query change (invalidates caches)


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # function, class, method, struct, ...
    line: int  # 0-based first line of the definition node
    sig_end: int  # last line of its signature (before the body)
    scope: tuple[int, ...] = ()  # header lines of enclosing definitions / scopes


@dataclass
class FileTags:
    definitions: list[Definition] = field(default_factory=list)
    references: dict[str, int] = field(default_factory=dict)  # identifier -> number of uses

    def to_json(self) -> str:
        defs = [[d.name, d.kind, d.line, d.sig_end, list(d.scope)] for d in self.definitions]
        return json.dumps({"d": defs, "r": self.references}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FileTags:
        data = json.loads(text)
        defs = [Definition(n, k, ln, se, tuple(sc)) for n, k, ln, se, sc in data["d"]]
        return cls(defs, data["r"])


def language_for(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:].lower()) if dot > 0 else None


@cache
def _query_source(lang: str) -> str:
    return "\n".join((QUERY_DIR / f"{part}.scm").read_text() for part in LANGUAGE_QUERIES[lang])


def queries_version() -> str:
    """Changes whenever a query changes, so cached tags from older queries are thrown away."""
    digest = hashlib.sha1(f"{TAGS_FORMAT}:{SIGNATURE_MAX_LINES}".encode())
    for lang in sorted(LANGUAGE_QUERIES):
        digest.update(lang.encode() + _query_source(lang).encode())
    return digest.hexdigest()[:12]


@cache
def _parser_and_query(lang: str):
    from tree_sitter import Query  # imported here: keeps CLI start fast
    from tree_sitter_language_pack import get_language, get_parser

    return get_parser(lang), Query(get_language(lang), _query_source(lang))


def _signature_end(node) -> int:
    """Last line of a definition's header: up to where its body starts (a `{` shares the line)."""
    start = node.start_point[0]
    body = node.child_by_field_name("body")
    if body is None or body.start_point[0] == start:
        return start
    first = body.text[:1] if body.text else b""
    end = body.start_point[0] if first in (b"{", b"(", b"[") else body.start_point[0] - 1
    return max(start, min(end, start + SIGNATURE_MAX_LINES - 1))


def extract_tags(source: bytes, lang: str) -> FileTags:
    """Definitions and references in one file's source. Syntax errors give partial tags."""
    from tree_sitter import QueryCursor

    parser, query = _parser_and_query(lang)
    tree = parser.parse(source)
    defs: dict[tuple[int, int], tuple[int, Definition, tuple[int, int]]] = {}  # by name node range
    scopes: list[tuple[int, int, int]] = []  # (start_byte, end_byte, header line)
    refs: list[tuple[tuple[int, int], str]] = []
    for pattern, caps in QueryCursor(query).matches(tree.root_node):
        for cap_name, nodes in caps.items():
            if cap_name == "scope":
                scopes += [(n.start_byte, n.end_byte, n.start_point[0]) for n in nodes]
            elif cap_name.startswith("name.definition."):
                kind = cap_name.rsplit(".", 1)[1]
                whole = (caps.get(f"definition.{kind}") or nodes)[0]
                for n in nodes:
                    key = (n.start_byte, n.end_byte)
                    # Several patterns may match one node (Go: struct_type and plain type_spec);
                    # the earliest pattern is the most specific.
                    if key not in defs or pattern < defs[key][0]:
                        d = Definition(n.text.decode("utf-8", "replace"), kind,
                                       whole.start_point[0], _signature_end(whole))
                        defs[key] = (pattern, d, (whole.start_byte, whole.end_byte))
            elif cap_name.startswith("name.reference."):
                refs += [((n.start_byte, n.end_byte), n.text.decode("utf-8", "replace")) for n in nodes]

    # A definition's scope: header lines of every definition or @scope node enclosing it. Syntax
    # nodes nest, so one pass over the ranges sorted outermost-first with a stack finds them.
    ranges = [(s, e, line, None) for s, e, line in scopes]
    ranges += [(rng[0], rng[1], d.line, d) for _, d, rng in defs.values()]
    ranges.sort(key=lambda r: (r[0], -r[1]))
    stack: list[tuple[int, int, int]] = []
    definitions = []
    for start, end, line, d in ranges:
        while stack and stack[-1][1] <= start:
            stack.pop()
        if d is not None:
            outer = tuple(sorted({ln for s, e, ln in stack if ln < d.line and (s, e) != (start, end)}))
            definitions.append(Definition(d.name, d.kind, d.line, d.sig_end, outer))
        stack.append((start, end, line))
    definitions.sort(key=lambda d: (d.line, d.name))

    references: dict[str, int] = {}
    for key, name in refs:
        if key not in defs:  # a definition's own name is not a use of it
            references[name] = references.get(name, 0) + 1
    if not references and definitions:
        references = _identifier_fallback(tree.root_node, defs)
    return FileTags(definitions, references)


def _identifier_fallback(root, defs) -> dict[str, int]:
    """When a query finds no references, count every identifier-like leaf instead (as Aider does)."""
    counts: dict[str, int] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.child_count == 0:
            if "identifier" in node.type and (node.start_byte, node.end_byte) not in defs:
                name = node.text.decode("utf-8", "replace")
                counts[name] = counts.get(name, 0) + 1
        else:
            stack.extend(node.children)
    return counts


def _git_paths(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True,
                         check=True).stdout
    return [p for p in out.decode("utf-8", "replace").split("\0") if p]


def blob_ids(root: Path, files: list[str]) -> dict[str, str]:
    """Git blob id of each file's current content: from the index for files git says are
    unmodified, hashed (`git hash-object`) for modified and new ones."""
    staged = {}
    out = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=root, capture_output=True, check=True).stdout
    for record in out.decode("utf-8", "replace").split("\0"):
        if "\t" in record:
            info, path = record.split("\t", 1)
            staged[path] = info.split()[1]
    dirty = set(_git_paths(root, "--modified")) | set(_git_paths(root, "--others", "--exclude-standard"))
    need = [f for f in files if f in dirty or f not in staged]
    ids = {f: staged[f] for f in files if f not in dirty and f in staged}
    if need:
        hashed = subprocess.run(["git", "hash-object", "--stdin-paths"], cwd=root, capture_output=True, check=True,
                                input="\n".join(need).encode()).stdout.decode().split()
        ids.update(zip(need, hashed))
    return ids


def list_source_files(root: Path, ignore: IgnoreRules | None = None) -> list[str]:
    """Tracked files with a known language, plus new files not yet added (the agent creates
    some), minus vendored dirs, minified files and files `ignore` (`.learnagentignore` and its
    always-on defaults) excludes (`secrets.py`, `*.key`: their definitions must not reach the map,
    the prompt or the store). `ignore`: the caller's rules (`do`: the user's, from the Repository);
    default the folder's own file. Untracked files inside hidden folders or site-packages are left
    out: an un-ignored `.venv` must not flood the map."""
    ignore = ignore if ignore is not None else IgnoreRules.in_folder(root)
    try:
        tracked = _git_paths(root, "--cached")
        untracked = _git_paths(root, "--others", "--exclude-standard")
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        raise NotAGitRepo(f"cannot list files of {root}: not a git repository") from err
    untracked = [p for p in untracked
                 if not any(part.startswith(".") or part == "site-packages"
                            for part in p.split("/")[:-1])]
    files = set()
    for path in tracked + untracked:
        if language_for(path) is None:
            continue
        parts = path.split("/")
        if VENDORED_DIRS.intersection(parts[:-1]) or ".min." in parts[-1] or ignore.is_ignored(path):
            continue
        files.add(path)
    return sorted(files)


def read_source(path: Path) -> bytes | None:
    """The file's bytes, or None when it should be skipped (missing, huge, binary, minified)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    lines = data.count(b"\n") + 1
    if len(data) > 5000 and len(data) / lines > 300:  # minified / generated bundle
        return None
    return data


def parse_file(root: Path, rel: str) -> FileTags | None:
    """Tags of one file, or None when it is skipped or its language/query fails on it."""
    lang = language_for(rel)
    source = read_source(root / rel)
    if lang is None or source is None:
        return None
    try:
        return extract_tags(source, lang)
    except Exception:  # noqa: BLE001 - one odd file must not stop the map
        return None


PARALLEL_MIN_FILES = 200  # below this, starting worker processes costs more than it saves


def parse_files(root: Path, rels: list[str]) -> list[FileTags | None]:
    """Tags of many files, in order. A cold build of a big repository uses every core:
    tree-sitter parsing is CPU-bound and holds the GIL. Workers are plain `python -m` child
    processes (not multiprocessing): nothing of the caller (torch threads, a `__main__` that
    can't be re-imported) is forked or re-run. Any worker failure falls back to parsing here."""
    workers = min(os.cpu_count() or 1, 8)
    if len(rels) < PARALLEL_MIN_FILES or workers < 2:
        return [parse_file(root, rel) for rel in rels]
    chunks = [rels[i::workers] for i in range(workers)]  # interleaved: big dirs get shared
    results: list[list[FileTags | None] | None] = []
    with tempfile.TemporaryDirectory(prefix="learnagent-tags-") as tmp:
        procs = []
        for i, chunk in enumerate(chunks):
            (Path(tmp) / f"in{i}").write_text(json.dumps(chunk))
            with open(Path(tmp) / f"in{i}") as fin, open(Path(tmp) / f"out{i}", "w") as fout:
                try:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "learnagent.agent.repomap_tags", str(root)],
                        stdin=fin, stdout=fout, stderr=subprocess.DEVNULL))
                except OSError:
                    procs.append(None)
        for i, proc in enumerate(procs):
            ok = proc is not None and proc.wait() == 0
            lines = (Path(tmp) / f"out{i}").read_text().splitlines() if ok else []
            if len(lines) == len(chunks[i]):
                results.append([None if ln == "null" else FileTags.from_json(ln) for ln in lines])
            else:
                results.append(None)
    ordered: dict[str, FileTags | None] = {}
    for chunk, got in zip(chunks, results):
        if got is None:
            got = [parse_file(root, rel) for rel in chunk]
        ordered.update(zip(chunk, got))
    return [ordered[rel] for rel in rels]


def _worker_main() -> None:
    """`python -m learnagent.agent.repomap_tags ROOT` < JSON list of paths: one JSON line each."""
    root = Path(sys.argv[1])
    for rel in json.load(sys.stdin):
        tags = parse_file(root, rel)
        sys.stdout.write((tags.to_json() if tags else "null") + "\n")


class TagCache:
    """SQLite table path -> (stamp, size, tags): stamp is the mtime_ns, or the blob id for a
    content-keyed cache shared by a repository's worktrees. One database per repository."""

    def __init__(self, db_file: Path):
        db_file.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(db_file, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS tags (path TEXT PRIMARY KEY, mtime_ns INTEGER,"
            " size INTEGER, tags TEXT)"
        )
        version = queries_version()
        row = self.conn.execute("SELECT value FROM meta WHERE key='queries'").fetchone()
        if row is None or row[0] != version:
            self.conn.execute("DELETE FROM tags")
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('queries', ?)", (version,))
        self.conn.commit()

    def load_all(self) -> dict[str, tuple[int, int, str]]:
        rows = self.conn.execute("SELECT path, mtime_ns, size, tags FROM tags")
        return {p: (m, s, t) for p, m, s, t in rows}

    def store(self, rows: list[tuple[str, int, int, str]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)", rows)
        self.conn.commit()

    def forget(self, paths: list[str]) -> None:
        self.conn.executemany("DELETE FROM tags WHERE path = ?", [(p,) for p in paths])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


if __name__ == "__main__":
    _worker_main()
