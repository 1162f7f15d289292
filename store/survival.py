"""Survival: how many of an episode's committed lines are still there N commits later.

Measured on the first-parent chain from the first commit that carried the episode (and is an
ancestor of HEAD) to the commit N steps later, or HEAD while there are fewer than N. A result
at N commits is final and stored once; a result at HEAD is provisional and replaced each time.
Lines are compared whitespace-normalised, as a multiset per file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from learnagent.store import gitutil
from learnagent.store.attribution import coverage, normalize, units_of
from learnagent.store.records import Episode


def committed_lines(ep: Episode, matches: list[dict]) -> list[tuple[str, str]]:
    """(path, normalised line) of every agent line that was committed, as it was committed."""
    units = units_of(ep.final_diff or "")
    cov = coverage(units, matches)
    lines = [(u.path, u.norm) for u in units if u.sign == "+" and u.index in cov.exact]
    lines += [(units[i].path, normalize(t)) for i, t in cov.edited.items() if units[i].sign == "+"]
    return lines


def survival(store, root: Path, ep: Episode, n: int, head: str | None = None) -> dict | None:
    """Measure (and record) the survival of one episode; None when it has no commit on HEAD's history."""
    done = [e for e in store.outcome_events(ep.id, "survival") if e.detail.get("final") and e.detail.get("n") == n]
    if done:
        e = done[-1]
        return {"present": e.matched, "total": e.total, "at": e.commit_sha} | e.detail
    matches = store.outcome_events(ep.id, "match")
    head = head or gitutil.rev(root, "HEAD")
    if not matches or not head:
        return None
    first = next((m.commit_sha for m in matches
                  if gitutil.rev(root, m.commit_sha) and gitutil.is_ancestor(root, m.commit_sha, head)), None)
    if first is None:
        return None
    lines = committed_lines(ep, [m.detail for m in matches])
    if not lines:
        return None
    chain = gitutil.git(root, "rev-list", "--first-parent", "--reverse", f"{first}..{head}").split()
    final = len(chain) >= n
    at = chain[n - 1] if final else head
    present = 0
    files: dict[str, Counter] = {}
    for path, norm in lines:
        if path not in files:
            text = gitutil.show_file(root, at, path) or ""
            files[path] = Counter(normalize(x) for x in text.splitlines())
        if files[path][norm] > 0:
            files[path][norm] -= 1
            present += 1
    detail = {"n": n, "commits_after": len(chain), "final": final, "rate": round(present / len(lines), 3)}
    store.drop_provisional_survival(ep.id)
    store.add_outcome_event(ep.id, "survival", commit=at, matched=present, total=len(lines), detail=detail)
    return {"present": present, "total": len(lines), "at": at} | detail


def update_survival(store, root: Path, repo_id: str, n: int, limit: int = 200) -> int:
    """Measure every accepted/edited/reverted episode that has no final result yet; returns how many."""
    head = gitutil.rev(root, "HEAD")
    count = 0
    for ep in store.episodes_to_measure_survival(repo_id, limit):
        if survival(store, root, ep, n, head) is not None:
            count += 1
    return count
