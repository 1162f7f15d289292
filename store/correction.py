"""The user's correction of an agent's edit: a diff from the agent's version to what was committed.

This is the most valuable training signal the outcome hooks produce: it says exactly how the
repository's owner wanted the agent's change to look. The agent's version of each file is
rebuilt from the episode's base commit plus its diff; the committed version is read from the
commit. Differences far from the lines the agent changed (other work committed at the same
time, or commits made since the base) are left out: only changes that touch the agent's
regions are kept.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from learnagent.store.attribution import FilePatch, parse_diff
from learnagent.store.gitutil import show_file

MAX_CORRECTION_CHARS = 20_000


def agent_version(base: list[str], fp: FilePatch) -> tuple[list[str], list[tuple[int, int]]]:
    """Apply the episode's hunks to the base lines; also return the changed regions (new coordinates)."""
    out: list[str] = []
    regions: list[tuple[int, int]] = []
    pos = 0
    for h in fp.hunks:
        start = h.old_start - 1 if h.old_len > 0 else h.old_start  # a pure insertion goes after old_start
        out.extend(base[pos:start])
        pos = max(pos, start)
        run_start = None
        for tag, text in h.lines:
            if tag == " ":
                if run_start is not None:
                    regions.append((run_start, len(out)))
                    run_start = None
                out.append(text)
                pos += 1
                continue
            if run_start is None:
                run_start = len(out)
            if tag == "-":
                pos += 1
            else:
                out.append(text)
        if run_start is not None:
            regions.append((run_start, len(out)))
    out.extend(base[pos:])
    return out, regions


def _touches(i1: int, i2: int, regions: list[tuple[int, int]]) -> bool:
    return any(i1 <= end and i2 >= start for start, end in regions)


def file_correction(agent: list[str], regions: list[tuple[int, int]], committed: list[str], path: str) -> str:
    sm = difflib.SequenceMatcher(None, agent, committed, autojunk=False)
    kept: list[str] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal" or not _touches(i1, i2, regions):
            kept.extend(agent[i1:i2])  # unrelated change: leave the agent's text
        else:
            kept.extend(committed[j1:j2])
    if kept == agent:
        return ""
    lines = difflib.unified_diff(agent, kept, f"a/{path}", f"b/{path}", lineterm="")
    return "\n".join(lines) + "\n"


def correction_diff(cwd: Path, episode_diff: str, base_commit: str | None, committed_rev: str) -> str | None:
    """The correction for every file of the episode, or None when the agent's version can't be rebuilt."""
    if not base_commit:
        return None
    parts: list[str] = []
    for fp in parse_diff(episode_diff):
        if fp.binary:
            continue
        base = show_file(cwd, base_commit, fp.old_path) if fp.old_path else ""
        if base is None:
            return None
        agent, regions = agent_version(base.splitlines(), fp)
        if fp.new_path is None:
            agent, regions = [], [(0, 0)]
        path = fp.new_path or fp.old_path
        committed = show_file(cwd, committed_rev, path)
        parts.append(file_correction(agent, regions, (committed or "").splitlines(), path))
    text = "".join(parts)
    if len(text) > MAX_CORRECTION_CHARS:
        text = text[:MAX_CORRECTION_CHARS] + "\n... (correction truncated)\n"
    return text
