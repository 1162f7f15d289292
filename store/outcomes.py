"""What became of each edit the agent proposed: verdicts from commits, explicit verdicts, expiry.

The git hooks' entry (services/settle_outcomes.py) calls `expire_stale` and `process_commit` /
`process_merge` / `process_rewrite`, which look at the new commit(s) and update the episodes they
belong to:

- accepted  every changed line of the agent's diff was committed unchanged
- edited    at least `accept_fraction` of it was committed, some of it changed by the user (the
            user's change is stored as meta["correction"], see store/correction.py); or, at the
            end of the window, at least `partial_fraction` of it was committed
- rejected  `learnagent reject`, or not (enough of it) committed within `reject_after_days`
- reverted  a later commit takes most of the committed lines out, or `git revert`s a commit
            that carried them

Verdicts reached from commits ("by attribution") follow the evidence while the window is open:
more commits can turn `edited` into `accepted`, and a rewrite (amend/rebase) that drops the
lines takes the verdict back. Explicit verdicts (`learnagent accept/reject`) are never
overridden by attribution, only by a later revert.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from learnagent.core.config import OutcomesConfig, load_config
from learnagent.core.errors import LearnagentError
from learnagent.store import gitutil
from learnagent.store.attribution import coverage, match_commit, parse_diff, removed_fraction, units_of
from learnagent.store.correction import correction_diff
from learnagent.store.records import OPEN_OUTCOMES, Episode

OPEN = OPEN_OUTCOMES
AUTO_BY = "attribution"
USER_BY = "user"
MAX_MERGE_RANGE = 50  # commits a post-merge (fast-forward) looks at
CLOCK_SLACK_S = 60  # a commit older than its episode (minus this) can't hold the episode's work
_REVERTS = re.compile(r"This reverts commit ([0-9a-f]{7,40})")


def load_settings(repo_root: Path) -> OutcomesConfig:
    """The repository's [outcomes] settings; the defaults when its config cannot be read (a broken config
    must not stop the hooks; `learnagent` itself reports it)."""
    try:
        return load_config(repo_root).outcomes
    except Exception:
        return OutcomesConfig()


# ---------------------------------------------------------------- events and verdicts

def set_verdict(store, episode_id: str, outcome: str, reason: str, *, by: str, commit: str | None = None) -> None:
    row = store.find_episode(episode_id)
    before = row.outcome if row else None
    meta = row.meta if row else {}
    store.set_outcome(episode_id, outcome, reason)
    extra = {"verdict_by": by}
    if before in OPEN and "open_outcome" not in meta:
        extra["open_outcome"] = before  # what a withdrawn automatic verdict goes back to
    store.update_meta(episode_id, **extra)
    store.add_outcome_event(episode_id, "verdict", commit=commit, outcome=outcome,
                            detail={"from": before, "reason": reason, "by": by})


def explicit_verdict(store, episode_id: str, outcome: str, reason: str | None = None) -> None:
    """`learnagent accept/reject`: the user's word, which attribution never overrides."""
    set_verdict(store, episode_id, outcome, reason or f"{outcome} by the user", by=USER_BY)


def open_candidates(store, repo_id: str, settings: OutcomesConfig, now: float) -> list[Episode]:
    """Episodes a new commit may belong to: applied or kept, or decided by attribution in the window.
    A kept episode (never applied) is only credited with a commit made from its branch
    (`made_from_branch`); an applied one by its lines, wherever they were committed."""
    since = now - settings.reject_after_days * 86400
    return [ep for ep in store.episodes_a_commit_may_decide(repo_id, since) if ep.outcome == "kept"
            or ep.meta.get("applied") or ep.meta.get("verdict_by") in (AUTO_BY, USER_BY)]


_SHA_WORD = re.compile(r"\b[0-9a-f]{7,40}\b")


def branch_tip(root: Path, ep: Episode) -> str | None:
    """The agent's commit of an episode: recorded at the end of the run (meta["tip"]), or for
    older episodes the tip of its branch while the branch exists."""
    tip = ep.meta.get("tip")
    if tip:
        return tip
    return gitutil.rev(root, ep.branch) if ep.branch else None


def made_from_branch(root: Path, ep: Episode, info: dict) -> bool:
    """Whether the commit `info` was made from the episode's branch rather than just happening
    to contain the same lines: the branch tip is in its history (merge, fast-forward, a rebase
    onto the branch), it carries the tip's author and author date (cherry-pick and rebase keep
    them; the agent commits as learnagent), or its message names the tip (cherry-pick -x, the
    message of a squash merge)."""
    tip = branch_tip(root, ep)
    if not tip:
        return False
    if gitutil.is_ancestor(root, tip, info["sha"]):
        return True
    try:
        picked = gitutil.commit_info(root, tip)
    except LearnagentError:  # the tip is gone (branch deleted, objects pruned)
        return False
    if (picked["author"], picked["author_email"], picked["authored_at"]) == \
            (info["author"], info["author_email"], info["authored_at"]):
        return True
    return any(picked["sha"].startswith(word) for word in _SHA_WORD.findall(info["message"]))


def _matches(store, episode_id: str) -> list[dict]:
    return [e.detail for e in store.outcome_events(episode_id, "match")]


def _may_credit(root: Path, ep: Episode, info: dict) -> bool:
    """Applied episodes (and ones already credited) are matched by their lines; a kept one that was
    never applied only by a commit made from its branch: its lines in a commit are otherwise a
    coincidence (the user wrote the same fix), and crediting them would mark a branch the user
    still means to apply as accepted."""
    if ep.meta.get("applied") or ep.meta.get("verdict_by") in (AUTO_BY, USER_BY):
        return True
    return made_from_branch(root, ep, info)


def reverdict(store, root: Path, ep: Episode, settings: OutcomesConfig, commit: str) -> list[str]:
    """Recompute an episode's verdict from all its (not rewritten) commit matches."""
    units = units_of(ep.final_diff)
    cov = coverage(units, _matches(store, ep.id))
    updates: dict = {"attribution": cov.summary() | {"last_commit": commit}}
    auto = ep.meta.get("verdict_by") != USER_BY
    new = None
    if auto and cov.fraction >= settings.accept_fraction:
        correction = correction_diff(root, ep.final_diff, ep.base_commit, commit)
        new = "accepted" if cov.all_exact and not correction else "edited"
        if correction:
            updates["correction"] = store.scrub(correction)
    elif auto and ep.outcome in ("accepted", "edited"):
        new = ep.meta.get("open_outcome", "pending")  # a rewrite took the lines out again
    store.update_meta(ep.id, **updates)
    if new is None or new == ep.outcome:
        return []
    share = f"{cov.covered}/{cov.total} lines committed"
    set_verdict(store, ep.id, new, f"{share} in {commit[:10]}", by=AUTO_BY, commit=commit)
    return [f"learnagent: episode {ep.id} {new} ({share})"]


# ---------------------------------------------------------------- commits

def process_commit(store, root: Path, sha: str, settings: OutcomesConfig, now: float | None = None, *,
                   repo_id: str) -> list[str]:
    """Attribute one commit (a merge: its diff against the first parent) to open episodes; detect reverts.

    `root` is where git runs (a linked worktree is fine); `repo_id` is its Repository's key.
    """
    now = now or time.time()
    if store.commit_processed(repo_id, sha):
        return []
    info = gitutil.commit_info(root, sha)
    patches = None
    msgs: list[str] = []
    matched_now: set[str] = set()
    for ep in open_candidates(store, repo_id, settings, now):
        if info["committed_at"] < ep.started_at - CLOCK_SLACK_S:
            continue
        if patches is None:
            patches = parse_diff(gitutil.commit_diff(root, sha, info["parents"][0] if info["parents"] else None))
        units = units_of(ep.final_diff)
        m = match_commit(units, patches)
        if not m.evidence:
            continue
        if not _may_credit(root, ep, info):
            continue
        covered = len(m.exact) + len(m.edited) + len(m.moved)
        store.add_outcome_event(ep.id, "match", commit=sha, matched=covered, total=len(units), detail=m.to_json())
        matched_now.add(ep.id)
        msgs += reverdict(store, root, ep, settings, sha)
    msgs += _detect_reverts(store, root, repo_id, info, patches, settings, skip=matched_now)
    store.mark_commit_processed(repo_id, sha, now)
    return msgs


def _detect_reverts(store, root, repo_id, info, patches, settings, skip: set[str]) -> list[str]:
    rows = store.episodes_committed_recently(repo_id, limit=200)
    reverted_shas = _REVERTS.findall(info["message"])
    msgs = []
    for ep in rows:
        if ep.id in skip:
            continue
        commits = [e.commit_sha for e in store.outcome_events(ep.id) if e.kind in ("match", "rewritten")]
        why = None
        if any(c.startswith(r) for r in reverted_shas for c in commits):
            why = f"git revert in {info['sha'][:10]}"
        else:
            if patches is None:
                patches = parse_diff(gitutil.commit_diff(root, info["sha"], info["parents"][0] if info["parents"] else None))
            units = units_of(ep.final_diff)
            share = removed_fraction(units, coverage(units, _matches(store, ep.id)), patches)
            if share >= settings.revert_fraction:
                why = f"{share:.0%} of its committed lines removed in {info['sha'][:10]}"
        if why:
            store.add_outcome_event(ep.id, "revert", commit=info["sha"], detail={"reason": why})
            set_verdict(store, ep.id, "reverted", why, by=AUTO_BY, commit=info["sha"])
            msgs.append(f"learnagent: episode {ep.id} reverted ({why})")
    return msgs


def process_rewrite(store, root: Path, pairs: list[tuple[str, str]], settings: OutcomesConfig, *,
                    repo_id: str) -> list[str]:
    """post-rewrite (amend, rebase): the new commits replace the old ones, never adding to them."""
    msgs: list[str] = []
    for old, new in pairs:
        if old != new and gitutil.rev(root, new):
            msgs += process_commit(store, root, new, settings, repo_id=repo_id)
    touched: set[str] = set()
    for old, new in pairs:
        if old == new:
            continue
        touched |= store.rewrite_matches(old, new)
        store.mark_commit_processed(repo_id, old)
    head = gitutil.rev(root, "HEAD") or pairs[-1][1]
    for eid in sorted(touched):
        ep = store.find_episode(eid)
        if ep.outcome in OPEN + ("accepted", "edited"):
            msgs += reverdict(store, root, ep, settings, head)
    return msgs


def process_merge(store, root: Path, settings: OutcomesConfig, *, repo_id: str) -> list[str]:
    """post-merge: a merge commit, or the commits a fast-forward brought in (e.g. a kept branch)."""
    orig = gitutil.rev(root, "ORIG_HEAD")
    if orig:
        shas = gitutil.git(root, "rev-list", "--reverse", "--first-parent", f"-n{MAX_MERGE_RANGE}",
                           f"{orig}..HEAD", check=False).split()
    else:
        shas = [gitutil.rev(root, "HEAD")]
    msgs: list[str] = []
    for sha in shas:
        if sha:
            msgs += process_commit(store, root, sha, settings, repo_id=repo_id)
    return msgs


# ---------------------------------------------------------------- expiry

def expire_stale(store, root: Path, settings: OutcomesConfig, now: float | None = None, *,
                 repo_id: str) -> list[str]:
    """Close the open episodes whose window has passed: edited if enough was committed, else rejected."""
    now = now or time.time()
    cutoff = now - settings.reject_after_days * 86400
    rows = store.episodes_open_before(repo_id, cutoff)
    msgs = []
    head = gitutil.rev(root, "HEAD")
    days = f"{settings.reject_after_days:g} days"
    for ep in rows:
        units = units_of(ep.final_diff)
        cov = coverage(units, _matches(store, ep.id))
        if cov.covered and cov.fraction >= settings.partial_fraction and head:
            correction = correction_diff(root, ep.final_diff, ep.base_commit, head)
            if correction:
                store.update_meta(ep.id, correction=store.scrub(correction))
            verdict, why = "edited", f"{cov.covered}/{cov.total} lines committed within {days}"
        else:
            verdict, why = "rejected", f"not committed within {days}"
        set_verdict(store, ep.id, verdict, why, by=AUTO_BY)
        msgs.append(f"learnagent: episode {ep.id} {verdict} ({why})")
    return msgs
