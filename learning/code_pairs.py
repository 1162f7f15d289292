"""Code-continuation samples mined from the repository itself: how this repository writes code.

Where the episode pairs of pairs.py show the model how a task turned into a diff, these show it
the code itself, as raw text a model continues (`mode: text`): a file cut at a line, the prefix
(the code before the cut) is x, the target is what the user actually wrote next, and the context
c is the repository's conventions files plus the OTHER files most like this one, retrieved with
BM25 over identifiers (learning/retrieval.py) from the file's path and the code before the cut:
no oracle ever sees the target.

Documents (`CodeDoc`): every code file at HEAD (its non-blank lines are the lines to predict), and
each file as an accepted change left it (accepted `do` episodes and imported history; its lines to
predict are the ones the change added). A document, like every file in a context, starts with its
path line (`retrieval.path_header`: "# PATH"), as an editor or agent knows which file it is in.

Held-out split, stable across nights like `pairs.is_heldout`:
- by FILE: `heldout_file(path)` hashes the path alone (`heldout_paths`: a stand-in when that holds
  out none). A held-out file's lines never train, it is never retrieved as context (the retrieval
  pool is the training files), and (with `build_pairs(heldout_files=corpus.is_heldout_file)`)
  its hunks leave the training episodes' diffs;
- by EPISODE: the lines a held-out episode added (`pairs.is_heldout`) are held-out documents of
  their own (origin "episode"), and no training document has a target line that only held-out
  episodes wrote (`_held_out_lines`: same text, and HEAD holds it no more often than they added
  it; a line repeated elsewhere, like a convention's import, was learnt from elsewhere). Lines
  shorter than `MIN_DISTINCT_LINE` non-blank characters are too common to tell apart and stay.
  The code BEFORE a training cut may still hold such lines: the model may read them, it is never
  trained to write them.

`mine_code(repo_root, store, repo_id)` -> `CodeCorpus` (its `train` / `heldout` documents, the
`context` of any line); `corpus.samples(docs)` -> `CodeSample`s for training; `to_pairs(samples)`
-> `pairs.Pair`s in text form for the trainers. learning/behaviour.py scores every line of the
held-out documents in one pass per document.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from learnagent.core.ignore import IgnoreRules
from learnagent.learning.pairs import CHARS_PER_TOKEN, CONVENTION_FILES, Pair, conventions_text, is_heldout
from learnagent.learning.retrieval import BM25Index, conventions_block, fit_context, path_header
from learnagent.store.records import Episode
from learnagent.store.redact import redact_text

SOURCE_EXTENSIONS = frozenset("""
.py .pyi .js .mjs .cjs .jsx .ts .mts .cts .tsx .go .rs .java .kt .kts .scala .c .h .cc .cpp .cxx .hpp .hh .cs
.rb .php .swift .m .mm .lua .pl .pm .r .jl .ex .exs .erl .hs .ml .mli .clj .dart .sh .bash .zsh .sql .vue
.svelte
""".split())
MAX_FILE_CHARS = 48_000  # larger files are generated or data more often than code someone writes
MIN_DISTINCT_LINE = 12  # non-blank characters a line needs before its text identifies it
SEGMENT_LINES = 24  # lines of one document that share one retrieved context


def heldout_file(path: str, fraction: float) -> bool:
    """Deterministic in the path alone: a file held out once is held out every night."""
    return is_heldout("file:" + path, fraction)


def heldout_paths(paths, fraction: float) -> frozenset[str]:
    """The held-out files among `paths`: `heldout_file`, or, when that holds out none of two or more
    files, the one with the lowest hash (a small repository still gets code to check an adapter on).
    That stand-in only ever goes back to training (when a new file hashes into the held-out share):
    a file that trained is never held out later, unless the stand-in itself is deleted."""
    paths = sorted(paths)
    held = frozenset(p for p in paths if heldout_file(p, fraction))
    if held or len(paths) < 2 or fraction <= 0:
        return held
    return frozenset([min(paths, key=lambda p: hashlib.sha256(("file:" + p).encode()).hexdigest())])


def is_source(path: str) -> bool:
    from learnagent.store.history import skipped_path

    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in SOURCE_EXTENSIONS and not skipped_path(path) \
        and name not in CONVENTION_FILES


# ---------------------------------------------------------------- reading the repository

def head_files(root: Path, ignore: IgnoreRules | None = None) -> dict[str, str]:
    """{path: text} of the code files committed at HEAD (scrubbed of secrets), without the ones
    `ignore` (.learnagentignore: the caller's Repository's rules; default the folder's own file) or
    the history import's vendored/generated rules leave out."""
    from learnagent.store import gitutil

    root = Path(root)
    if gitutil.rev(root, "HEAD") is None:
        return {}
    ignore = ignore if ignore is not None else IgnoreRules.in_folder(root)
    listing = gitutil.git(root, "ls-tree", "-r", "-z", "-l", "--full-tree", "HEAD")
    wanted: list[tuple[str, str]] = []
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, sha, size = meta.split()
        if kind != "blob" or mode == "120000" or size == "-" or int(size) > MAX_FILE_CHARS * 2:
            continue
        if is_source(path) and not ignore.is_ignored(path):
            wanted.append((path, sha))
    return {path: text for path, text in zip((p for p, _ in wanted), _read_blobs(root, [s for _, s in wanted]))
            if text is not None}


def _read_blobs(root: Path, shas: list[str]) -> list[str | None]:
    """Blob contents through one `git cat-file --batch`; None for binary or oversized ones."""
    if not shas:
        return []
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input="\n".join(shas).encode() + b"\n",
                         capture_output=True, check=True).stdout
    texts, pos = [], 0
    for _ in shas:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        body = out[header_end + 1: header_end + 1 + size]
        pos = header_end + 1 + size + 1
        text = None if b"\0" in body else body.decode("utf-8", "replace")
        texts.append(redact_text(text) if text is not None and len(text) <= MAX_FILE_CHARS else None)
    return texts


# ---------------------------------------------------------------- accepted changes

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def file_diffs(diff: str) -> dict[str, tuple[bool, list[str]]]:
    """{new path: (is a new file, hunk lines)} of a unified diff (deleted files left out)."""
    out: dict[str, tuple[bool, list[str]]] = {}
    old = path = None
    body: list[str] = []
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            if path:
                out[path] = (old is None, body)
            old = path = None
            body = []
        elif line.startswith("--- ") and not body:
            old = None if line[4:].strip() == "/dev/null" else line[4:].strip().removeprefix("a/")
        elif line.startswith("+++ ") and not body:
            target = line[4:].strip()
            path = None if target == "/dev/null" else target.removeprefix("b/")
        elif path and (line.startswith(("@@", " ", "+", "-", "\\")) or line == ""):
            body.append(line)
    if path:
        out[path] = (old is None, body)
    return out


def apply_hunks(before: str, hunks: list[str]) -> tuple[str, list[int]] | None:
    """The file after a diff's hunks, and the 0-based numbers of the lines they added; None when the
    hunks do not fit `before` (the text has moved on, or it was scrubbed differently)."""
    old = before.splitlines(keepends=True)
    new: list[str] = []
    added: list[int] = []
    pos = 0  # next old line to copy
    i = 0
    while i < len(hunks):
        m = _HUNK.match(hunks[i])
        if not m:
            i += 1
            continue
        start = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
        if start < pos or start > len(old):
            return None
        new += old[pos:start]
        pos = start
        i += 1
        last = ""
        while i < len(hunks) and not hunks[i].startswith("@@"):
            line = hunks[i]
            tag, text = (line[:1], line[1:]) if line else (" ", "")
            if tag == "\\":  # "\ No newline at end of file" for the line before (on the new side unless "-")
                if last == "+" and new[-1].endswith("\n"):
                    new[-1] = new[-1][:-1]
            elif tag == "+":
                added.append(len(new))
                new.append(text + "\n")
            elif tag in (" ", "-"):
                if pos >= len(old) or old[pos].rstrip("\r\n") != text.rstrip("\r"):
                    return None
                pos += 1
                if tag == " ":
                    new.append(old[pos - 1])
            last = tag
            i += 1
    new += old[pos:]
    return "".join(new), added


def hunk_text(hunks: list[str]) -> tuple[str, list[int]] | None:
    """The new side of a diff's hunks (context and added lines, hunks one blank line apart) and the
    0-based numbers of the added lines: what a change shows of a file whose earlier text is not at
    hand (no checkout). None when the hunks add nothing."""
    lines: list[str] = []
    added: list[int] = []
    for line in hunks:
        if line.startswith("@@"):
            if lines and lines[-1].strip():
                lines.append("")
            continue
        tag, text = (line[:1], line[1:]) if line else (" ", "")
        if tag == "+":
            added.append(len(lines))
            lines.append(text)
        elif tag == " ":
            lines.append(text)
    return ("\n".join(lines) + "\n", added) if added else None


def change_after(ep: Episode, root: Path | None) -> dict[str, tuple[str, list[int]]]:
    """{path: (text after the episode's change, added line numbers)} for its code files. Without a
    checkout (`root` None) a `do` episode's changed file is known only as far as its diff shows it:
    the new side of its hunks (`hunk_text`); a created file, or an imported commit's (meta
    "before"), is whole either way."""
    from learnagent.store import gitutil

    before = ep.meta.get("before")
    skipped = set(ep.meta.get("before_skipped") or ())
    out = {}
    for path, (created, hunks) in file_diffs(ep.final_diff or "").items():
        if not is_source(path) or path in skipped:
            continue
        if created:
            text = ""
        elif isinstance(before, dict):  # imported history: the files as they were, scrubbed
            text = before.get(path)
        elif root is None:
            fragment = hunk_text(hunks)
            if fragment and len(fragment[0]) <= MAX_FILE_CHARS:
                out[path] = fragment
            continue
        else:
            text = gitutil.show_file(root, ep.base_commit, path) if ep.base_commit else None
            text = redact_text(text) if text is not None else None
        applied = apply_hunks(text, hunks) if text is not None else None
        if applied and applied[1] and len(applied[0]) <= MAX_FILE_CHARS:
            out[path] = applied
    return out


# ---------------------------------------------------------------- documents and samples

@dataclass(frozen=True)
class CodeDoc:
    """One version of one file, as a model reads it (`path_header` first), and the lines to predict."""

    path: str
    text: str  # path_header(path) + the file's text
    origin: str  # "file": the file at HEAD; "episode": the file as an accepted change left it
    episode_id: str | None
    heldout: bool
    lines: tuple[int, ...]  # character offsets where the lines to predict start, ascending

    @property
    def key(self) -> str:
        return f"{self.origin}:{self.episode_id or 'HEAD'}:{self.path}"


@dataclass(frozen=True)
class CodeSample:
    """x = `prefix` (raw text), c = `context`, the user's next lines = `target`."""

    id: str
    path: str
    episode_id: str | None  # the accepted change it comes from; None for a file at HEAD
    prefix: str  # the path line and the code before the cut, up to its last non-blank character
    target: str  # the line breaks after that, then the next `target_lines` lines as the user wrote them
    context: str
    retrieved: tuple[str, ...]  # the files the context shows
    heldout: bool
    mode: str = "text"

    @property
    def next_line(self) -> str:
        return next((line for line in self.target.split("\n") if line.strip()), "")


def line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text) if m.end() < len(text)]


def _distinct(line: str) -> str | None:
    key = "".join(line.split())
    return key if len(key) >= MIN_DISTINCT_LINE else None


@dataclass
class CodeCorpus:
    root: Path | None  # None: no checkout, `files` are the store's newest versions (mine_code)
    files: dict[str, str]  # every code file at HEAD
    docs: list[CodeDoc]
    conventions: str
    heldout_fraction: float
    context_tokens: int = 1024
    top_k: int = 4  # files retrieved per context (before fitting to the budget)
    _contexts: dict = field(default_factory=dict, repr=False)

    @cached_property
    def heldout_files(self) -> frozenset[str]:
        return heldout_paths(self.files, self.heldout_fraction)

    def is_heldout_file(self, path: str) -> bool:
        """The split by file (pass it to `pairs.build_pairs(heldout_files=...)`); a file no longer at
        HEAD is held out by its hash alone."""
        return path in self.heldout_files if path in self.files else heldout_file(path, self.heldout_fraction)

    @property
    def train(self) -> list[CodeDoc]:
        return [d for d in self.docs if not d.heldout]

    @property
    def heldout(self) -> list[CodeDoc]:
        return [d for d in self.docs if d.heldout]

    @cached_property
    def pool(self) -> dict[str, str]:
        """What retrieval may return: the training files at HEAD (never a held-out file)."""
        return {p: t for p, t in self.files.items() if p not in self.heldout_files}

    @property
    def conventions_block(self) -> str:
        """The conventions text every context starts with (learning/behaviour.py encodes it once)."""
        return conventions_block(self.conventions, self.context_tokens * CHARS_PER_TOKEN)

    @cached_property
    def index(self) -> BM25Index:
        return BM25Index(self.pool)

    def segment_start(self, doc: CodeDoc, line: int) -> int:
        """Offset the context of the line starting at `line` is retrieved from: the start of its
        segment (`SEGMENT_LINES` lines to predict share one context, so one pass scores them)."""
        k = doc.lines.index(line) // SEGMENT_LINES * SEGMENT_LINES
        return doc.lines[k]

    def context(self, doc: CodeDoc, line: int) -> tuple[str, tuple[str, ...]]:
        """(c, retrieved paths) for the line of `doc` starting at offset `line`: the conventions
        and the training files most like `doc.path` + the code before the line's segment."""
        start = self.segment_start(doc, line)
        key = (doc.path, doc.text[:start])
        if key not in self._contexts:
            hits = self.index.search(doc.text[:start], self.top_k, path=doc.path)
            text, paths = fit_context(self.conventions, [(h.path, self.pool[h.path]) for h in hits],
                                      self.context_tokens * CHARS_PER_TOKEN)
            self._contexts[key] = (text, tuple(paths))
        return self._contexts[key]

    def samples(self, docs: list[CodeDoc] | None = None, *, per_doc: int = 8, target_lines: int = 4,
                prefix_tokens: int = 1024, cuts: str = "spread") -> list[CodeSample]:
        """Up to `per_doc` cuts per document as `CodeSample`s. Default: the training documents.

        `cuts="spread"`: spread evenly over the document's lines to predict (a stable, path-dependent
        offset). `cuts="blocks"`: first the lines that start a top-level block (`block_starts`:
        imports, module-level names, decorators, class and function headers), spread the same way,
        then other lines if there are fewer block starts than `per_doc`. A repository's house style
        shows where a new block starts (what a module imports first, what decorates a function,
        how its parameters are named and typed), which a cut in the middle of a body rarely shows."""
        if cuts not in ("spread", "blocks"):
            raise ValueError(f"cuts must be spread or blocks, got {cuts!r}")
        out = []
        for doc in self.train if docs is None else docs:
            if not doc.lines:
                continue
            if cuts == "blocks":
                starts = block_starts(doc)
                chosen = _spread(doc.key, starts, per_doc)
                rest = [o for o in doc.lines if o not in set(starts)]
                chosen = sorted(set(chosen) | set(_spread(doc.key, rest, per_doc - len(chosen))))
            else:
                chosen = _spread(doc.key, list(doc.lines), per_doc)
            for cut in chosen:
                end = cut
                for _ in range(target_lines):
                    nl = doc.text.find("\n", end)
                    end = len(doc.text) if nl < 0 else nl + 1
                # x ends on its last non-blank character and y starts with the line breaks: BPE merges
                # a trailing "\n\n" (or "\n" + indentation) into a token that, inside a file, only
                # comes before more whitespace, so a prompt ending there reads "more blank lines follow"
                before = doc.text[:cut].rstrip()
                prefix = before
                limit = prefix_tokens * CHARS_PER_TOKEN
                if len(prefix) > limit:  # keep the path line and the code nearest the cut
                    nl = prefix.find("\n", len(prefix) - limit)
                    prefix = path_header(doc.path) + (prefix[nl + 1:] if nl >= 0 else prefix[-limit:])
                context, paths = self.context(doc, cut)
                number = doc.text.count("\n", 0, cut)  # the file's own line number (the path line is 0)
                out.append(CodeSample(id=f"{doc.key}:{number}", path=doc.path, episode_id=doc.episode_id,
                                      prefix=prefix, target=doc.text[len(before):end].rstrip("\n"),
                                      context=context, retrieved=paths, heldout=doc.heldout))
        return out


def _spread(key: str, offsets: list[int], n: int) -> list[int]:
    """Up to `n` of `offsets`, evenly spaced, from a stable offset derived from `key`."""
    if n <= 0 or not offsets:
        return []
    step = max(len(offsets) / n, 1.0)
    first = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % max(int(step), 1)
    return sorted({offsets[min(int(first + i * step), len(offsets) - 1)] for i in range(min(n, len(offsets)))})


def block_starts(doc: CodeDoc) -> list[int]:
    """The lines to predict that start a top-level block: not indented, not closing a bracket, not
    right after a decorator line or a line that continues (open bracket, comma, backslash)."""
    out, previous = [], ""
    lines = set(doc.lines)
    pos = 0
    for line in doc.text.split("\n"):
        if pos in lines and line[:1] not in ("", " ", "\t", ")", "]", "}") \
                and not previous.startswith("@") and not previous.rstrip().endswith(("(", "[", "{", ",", "\\")):
            out.append(pos)
        if line.strip():
            previous = line
        pos += len(line) + 1
    return out


def mine_code(repo_root: Path | None, store=None, repo_id: str | None = None, *, heldout_fraction: float = 0.2,
              context_tokens: int = 1024, exclude_ids=(), ignore: IgnoreRules | None = None) -> CodeCorpus:
    """The repository's code as documents to learn from and to measure on (see the module doc).
    `ignore`: the files left out of HEAD's (`IgnoreRules.for_repository` of the caller's Repository;
    default `repo_root`'s own .learnagentignore).

    With `store`/`repo_id`, accepted changes (accepted `do` episodes and imported history, minus
    `exclude_ids`) add their versions of the files they touched.

    `repo_root` None: no checkout on this machine (`sleep --store URL --repo NAME`). Then HEAD's
    stand-in is the store: each code file as the newest accepted change of a TRAINING episode left
    it (`store_files`: every accepted change counts, also those in `exclude_ids`, so the split by
    file stays as stable as HEAD's), whole when the change created it or carried its earlier text,
    else the new side of its hunks; no conventions files.
    """
    root = Path(repo_root) if repo_root is not None else None
    files = head_files(root, ignore) if root is not None else {}
    changes: list[tuple[Episode, dict]] = []
    excluded = set(exclude_ids)
    if store is not None and repo_id is not None:
        for summary in store.list_episodes(repo_id, limit=1_000_000)[::-1]:
            if (summary.id in excluded and root is not None) or not (summary.final_diff or "").strip() \
                    or summary.meta.get("final_diff_truncated"):  # a cut diff (agent/run.py) is no whole change
                continue
            if not (summary.outcome == "accepted" or summary.source == "history"):
                continue
            ep = store.get_episode(summary.id)
            changes.append((ep, change_after(ep, root)))
    if root is None:
        files = store_files([after for ep, after in changes if not is_heldout(ep.id, heldout_fraction)])
        changes = [(ep, after) for ep, after in changes if ep.id not in excluded]
    held_ep = {ep.id for ep, _ in changes if is_heldout(ep.id, heldout_fraction)}
    held_lines = _held_out_lines(files, [after for ep, after in changes if ep.id in held_ep])

    conventions = conventions_text(root, context_tokens * CHARS_PER_TOKEN // 4, header=path_header("{name}"))
    corpus = CodeCorpus(root=root, files=files, docs=[], conventions=conventions, heldout_fraction=heldout_fraction,
                        context_tokens=context_tokens)
    for path in sorted(files):
        text = path_header(path) + files[path]
        held = corpus.is_heldout_file(path)
        lines = tuple(s for s in line_starts(text)[1:]
                      if _line(text, s).strip() and (held or _distinct(_line(text, s)) not in held_lines))
        corpus.docs.append(CodeDoc(path, text, "file", None, held, lines))
    for ep, after in changes:
        held = ep.id in held_ep
        for path, (text, added) in sorted(after.items()):
            if corpus.is_heldout_file(path) and (root is not None or path in files):
                continue  # a held-out file is measured as it is at HEAD (without a checkout: its newest version)
            text = path_header(path) + text
            starts = line_starts(text)  # the path line is line 0: the file's line n is line n + 1
            lines = tuple(starts[n + 1] for n in added if n + 1 < len(starts) and _line(text, starts[n + 1]).strip()
                          and (held or _distinct(_line(text, starts[n + 1])) not in held_lines))
            if lines:
                corpus.docs.append(CodeDoc(path, text, "episode", ep.id, held, lines))
    return corpus


def store_files(afters: list[dict]) -> dict[str, str]:
    """{path: text} of each code file as the last of `afters` (change_after's, oldest first) that
    touched it left it: the stand-in for HEAD when there is no checkout."""
    files: dict[str, str] = {}
    for after in afters:
        for path, (text, _added) in after.items():
            files[path] = text
    return files


def _line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _held_out_lines(files: dict[str, str], held_changes: list[dict]) -> set[str]:
    """Texts of lines that only held-out episodes wrote: the ones they added at least as often as
    HEAD holds them. A line HEAD has more often than that (a repeated convention: an import, a
    decorator) was also written elsewhere, and learning it from there is no leak."""
    from collections import Counter

    at_head = Counter(k for text in files.values() for k in map(_distinct, text.splitlines()) if k)
    added: Counter = Counter()
    for after in held_changes:
        for text, numbers in after.values():
            lines = text.splitlines()
            added.update(k for k in (_distinct(lines[n]) for n in numbers if n < len(lines)) if k)
    return {k for k, n in added.items() if n >= at_head[k]}


def to_pairs(samples: list[CodeSample]) -> list[Pair]:
    """Text-form training pairs (prompt = the raw prefix) for the trainers; `episode_id` is the
    accepted change's episode, or `file:PATH` for a file at HEAD."""
    return [Pair(episode_id=s.episode_id or f"file:{s.path}", prompt=s.prefix, context=s.context, target=s.target)
            for s in samples]
