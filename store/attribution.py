"""Match the hunks of a commit to the diff an agent proposed, line by line.

The unit of evidence is one changed line of the episode's diff: each line the agent added
(`+`) and each line it removed (`-`), whitespace-normalised, blank lines ignored. A commit
"covers" a unit when:

- exact:  the commit adds the same normalised line to the same file (or removes the same
          line from it, for a `-` unit). Lines are compared as a multiset per file, not by
          position, so hunks the user moved inside the file still match.
- edited: no exact line, but the commit replaced it: aligning the agent's and the commit's
          added lines of the file (difflib over the normalised sequences) pairs it with a user
          line in the same place; or, failing that, an added line of the same file is similar
          (difflib ratio >= FUZZY_RATIO = 0.6). Either way the user changed the agent's line.
- moved:  the exact line was added to a different file (code moved between files); these
          count as exact, but only alongside other evidence (see `CommitMatch.evidence`).

A commit is attributed to an episode only with enough evidence that the match is not a
coincidence (common lines such as `return None` occur everywhere): at least
MIN_EVIDENCE significant units (>= 3 characters with a letter or digit), or all of them when
the episode has fewer, with at least one of them exact in the same file; or one exact
same-file line of at least DISTINCTIVE_CHARS characters (a one-line hunk committed on its
own); or, for code that was moved or entirely reworded, half of the significant units.

Coverage accumulates over commits as a UNION of covered units (see `Coverage`): partial
staging and hunks split over several commits add up, while the same lines committed again
(amend, rebase, cherry-pick, squash) are never counted twice.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

FUZZY_RATIO = 0.6  # difflib ratio above which a committed line is the agent's line, edited
MIN_EVIDENCE = 2  # significant units a commit must cover to be attributed to an episode
DISTINCTIVE_CHARS = 20  # ...or one exact same-file line at least this long
MAX_FUZZY_CANDIDATES = 2000  # lines per file beyond which the fuzzy pass is skipped (speed)

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text)


@dataclass
class FilePatch:
    old_path: str | None  # None: the file is new
    new_path: str | None  # None: the file was deleted
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    def lines(self, sign: str) -> list[str]:
        return [text for h in self.hunks for tag, text in h.lines if tag == sign]


def _strip_prefix(raw: str) -> str | None:
    raw = raw.rstrip("\n")
    if "\t" in raw:  # `--- a/file\t2024-01-01 ...` from diff -u
        raw = raw.split("\t", 1)[0]
    if raw.startswith('"') and raw.endswith('"'):
        raw = raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode(
            "utf-8", "replace")
    if raw == "/dev/null":
        return None
    return raw[2:] if raw[:2] in ("a/", "b/") else raw


def parse_diff(text: str) -> list[FilePatch]:
    """Parse a (git) unified diff into files and hunks; tolerant of any context size.

    A hunk's line counts decide where it ends, so a removed line that reads `-- x` is never
    mistaken for the `--- a/file` header of the next file.
    """
    files: list[FilePatch] = []
    cur: FilePatch | None = None
    hunk: Hunk | None = None
    for line in (text or "").split("\n"):
        if hunk is not None and not _hunk_done(hunk):
            if line[:1] in (" ", "+", "-"):
                hunk.lines.append((line[0], line[1:]))
                continue
            if line == "":  # a blank context line whose single space was stripped in transit
                hunk.lines.append((" ", ""))
                continue
            if line.startswith("\\"):  # \ No newline at end of file
                continue
            hunk = None  # malformed (truncated) hunk: read on as headers
        if line.startswith("diff --git "):
            parts = line[len("diff --git "):].split(" b/", 1)
            old = parts[0][2:] if parts[0].startswith("a/") else parts[0]
            cur = FilePatch(old, parts[1] if len(parts) > 1 else old)
            files.append(cur)
            hunk = None
        elif line.startswith("--- "):
            if cur is None or cur.hunks:  # a plain `diff -u` has no `diff --git` line per file
                cur = FilePatch(None, None)
                files.append(cur)
            cur.old_path = _strip_prefix(line[4:])
        elif line.startswith("+++ ") and cur is not None:
            cur.new_path = _strip_prefix(line[4:])
        elif line.startswith("new file mode") and cur is not None:
            cur.old_path = None
        elif line.startswith("deleted file mode") and cur is not None:
            cur.new_path = None
        elif line.startswith("rename from ") and cur is not None:
            cur.old_path = line[len("rename from "):]
        elif line.startswith("rename to ") and cur is not None:
            cur.new_path = line[len("rename to "):]
        elif line.startswith(("Binary files ", "GIT binary patch")) and cur is not None:
            cur.binary = True
        elif (m := _HUNK.match(line)) and cur is not None:
            hunk = Hunk(int(m[1]), int(m[2]) if m[2] is not None else 1,
                        int(m[3]), int(m[4]) if m[4] is not None else 1)
            cur.hunks.append(hunk)
    return [f for f in files if f.old_path or f.new_path]


def _hunk_done(h: Hunk) -> bool:
    old = sum(1 for t, _ in h.lines if t != "+")
    new = sum(1 for t, _ in h.lines if t != "-")
    return old >= h.old_len and new >= h.new_len


# ---------------------------------------------------------------- units

def normalize(line: str) -> str:
    return " ".join(line.split())


def significant(norm: str) -> bool:
    return len(norm) >= 3 and any(c.isalnum() for c in norm)


@dataclass(frozen=True)
class Unit:
    index: int
    path: str  # the file the agent changed (its new path for `+`, old path for `-`)
    sign: str  # "+" or "-"
    text: str
    norm: str

    @property
    def significant(self) -> bool:
        return significant(self.norm)


def units_of(diff_text: str) -> list[Unit]:
    """The agent's changed lines, in diff order; the index is stable for a given diff."""
    out: list[Unit] = []
    for fp in parse_diff(diff_text):
        if fp.binary:
            continue
        for h in fp.hunks:
            for tag, text in h.lines:
                norm = normalize(text)
                if tag == " " or not norm:
                    continue
                path = fp.new_path if tag == "+" else fp.old_path
                out.append(Unit(len(out), path or fp.path, tag, text, norm))
    return out


# ---------------------------------------------------------------- matching one commit

@dataclass
class CommitMatch:
    exact: list[int] = field(default_factory=list)
    edited: dict[int, str] = field(default_factory=dict)  # unit index -> the committed line
    moved: list[int] = field(default_factory=list)
    evidence: bool = False

    def to_json(self) -> dict:
        return {"exact": self.exact, "edited": {str(k): v for k, v in self.edited.items()}, "moved": self.moved}


def _by_path(patches: list[FilePatch], sign: str) -> dict[str, list[str]]:
    """Committed lines of one sign per path; a renamed file is reachable under both names."""
    out: dict[str, list[str]] = {}
    for fp in patches:
        lines = fp.lines(sign)
        for p in {fp.old_path, fp.new_path} - {None}:
            out.setdefault(p, []).extend(lines)
    return out


def match_commit(units: list[Unit], patches: list[FilePatch]) -> CommitMatch:
    """Which of the episode's units this commit's diff contains (see the module docstring)."""
    added = {p: Counter(normalize(x) for x in ls) for p, ls in _by_path(patches, "+").items()}
    removed = {p: Counter(normalize(x) for x in ls) for p, ls in _by_path(patches, "-").items()}
    raw_added = _by_path(patches, "+")
    m = CommitMatch()
    rest: list[Unit] = []
    for u in units:  # pass 1: exact, same file
        pool = (added if u.sign == "+" else removed).get(u.path)
        if pool and pool[u.norm] > 0:
            pool[u.norm] -= 1
            m.exact.append(u.index)
        else:
            rest.append(u)
    _pair_replaced(units, rest, added, raw_added, m)  # pass 2a: edited, aligned by position
    rest = [u for u in rest if u.index not in m.edited]
    still: list[Unit] = []
    for u in rest:  # pass 2b: edited, the most similar remaining line of the same file
        pool = added.get(u.path)
        if u.sign != "+" or not pool or len(pool) > MAX_FUZZY_CANDIDATES:
            still.append(u)
            continue
        best, best_ratio = None, FUZZY_RATIO
        for cand in {normalize(x) for x in raw_added.get(u.path, [])}:
            if pool[cand] <= 0:
                continue
            sm = difflib.SequenceMatcher(None, u.norm, cand, autojunk=False)
            if sm.real_quick_ratio() >= best_ratio and sm.quick_ratio() >= best_ratio and sm.ratio() >= best_ratio:
                best, best_ratio = cand, sm.ratio()
        if best is None:
            still.append(u)
            continue
        pool[best] -= 1
        m.edited[u.index] = next(x for x in raw_added[u.path] if normalize(x) == best)
    elsewhere = Counter()
    for path, pool in added.items():
        elsewhere.update({k: v for k, v in pool.items() if v > 0})
    for u in still:  # pass 3: moved to another file
        if u.sign == "+" and elsewhere[u.norm] > 0:
            elsewhere[u.norm] -= 1
            m.moved.append(u.index)
    m.evidence = _enough(units, m)
    if not m.evidence:
        return CommitMatch()
    return m


def _pair_replaced(units, rest, added, raw_added, m: CommitMatch) -> None:
    """Align the agent's and the commit's added lines of each file (difflib over the normalised
    sequences): a block of agent lines the commit *replaced* by as many user lines, between
    lines that match, is the user's edit of them however different the text. Only in files with
    an exact match, which anchors the alignment."""
    open_ = {u.index for u in rest if u.sign == "+"}
    anchored = {units[i].path for i in m.exact}
    for path in anchored:
        mine = [u for u in units if u.sign == "+" and u.path == path]
        theirs = raw_added.get(path, [])
        if not any(u.index in open_ for u in mine) or len(theirs) > MAX_FUZZY_CANDIDATES:
            continue
        sm = difflib.SequenceMatcher(None, [u.norm for u in mine], [normalize(x) for x in theirs], autojunk=False)
        pool = added[path]
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag != "replace":
                continue
            for u, line in zip(mine[i1:i2], theirs[j1:j2]):
                norm = normalize(line)
                if u.index in open_ and norm and pool[norm] > 0:
                    pool[norm] -= 1
                    m.edited[u.index] = line


def _enough(units: list[Unit], m: CommitMatch) -> bool:
    sig = {u.index for u in units if u.significant} or {u.index for u in units}
    if not sig:
        return False
    exact = len(sig.intersection(m.exact))
    edited = len(sig.intersection(m.edited))
    moved = len(sig.intersection(m.moved))
    need = min(MIN_EVIDENCE, len(sig))
    if exact >= 1 and exact + edited + moved >= need:
        return True
    by_index = {u.index: u for u in units}
    if any(len(by_index[i].norm) >= DISTINCTIVE_CHARS for i in sig.intersection(m.exact)):
        return True  # one long line, verbatim, in the same file: a hunk committed on its own
    return exact + edited + moved >= max(need, len(sig) / 2)


# ---------------------------------------------------------------- coverage over commits

@dataclass
class Coverage:
    total: int  # units counted (significant ones; all when none are significant)
    exact: set[int]
    edited: dict[int, str]

    @property
    def covered(self) -> int:
        return len(self.exact) + len(self.edited)

    @property
    def fraction(self) -> float:
        return self.covered / self.total if self.total else 0.0

    @property
    def all_exact(self) -> bool:
        return self.total > 0 and len(self.exact) == self.total

    def summary(self) -> dict:
        return {"units": self.total, "exact": len(self.exact), "edited": len(self.edited),
                "fraction": round(self.fraction, 3)}


def coverage(units: list[Unit], matches: list[dict]) -> Coverage:
    """Union of the per-commit matches (their `to_json` form); an exact match beats an edited one."""
    counted = {u.index for u in units if u.significant} or {u.index for u in units}
    exact: set[int] = set()
    edited: dict[int, str] = {}
    for mj in matches:
        exact.update(i for i in mj.get("exact", []) + mj.get("moved", []) if i in counted)
        for k, v in mj.get("edited", {}).items():
            if int(k) in counted:
                edited[int(k)] = v
    for i in exact:
        edited.pop(i, None)
    return Coverage(len(counted), exact, edited)


def removed_fraction(units: list[Unit], cov: Coverage, patches: list[FilePatch]) -> float:
    """How much of what was committed from the episode this commit takes out again (revert detection)."""
    removed = {p: Counter(normalize(x) for x in ls) for p, ls in _by_path(patches, "-").items()}
    lines = [(u.path, u.norm) for u in units if u.sign == "+" and u.index in cov.exact]
    lines += [(units[i].path, normalize(t)) for i, t in cov.edited.items() if units[i].sign == "+"]
    if not lines:
        return 0.0
    gone = 0
    for path, norm in lines:
        pool = removed.get(path)
        if pool and pool[norm] > 0:
            pool[norm] -= 1
            gone += 1
    return gone / len(lines)
