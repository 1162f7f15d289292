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

import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path

from learnagent.core import home
from learnagent.core.errors import LearnagentError
from learnagent.store import gitutil
from learnagent.store.attribution import coverage, match_commit, parse_diff, removed_fraction, units_of
from learnagent.store.correction import correction_diff

OPEN = ("pending", "kept")
AUTO_BY = "attribution"
USER_BY = "user"
MAX_MERGE_RANGE = 50  # commits a post-merge (fast-forward) looks at
CLOCK_SLACK_S = 60  # a commit older than its episode (minus this) can't hold the episode's work
_REVERTS = re.compile(r"This reverts commit ([0-9a-f]{7,40})")


@dataclass
class OutcomeSettings:
    """[outcomes] settings; defaults apply while core.config has no such section."""

    reject_after_days: float = 7.0
    survival_commits: int = 20
    accept_fraction: float = 0.9  # share of the agent's lines committed for a verdict
    partial_fraction: float = 0.5  # at the window's end: at least this much committed -> edited
    revert_fraction: float = 0.6  # share of the committed lines one commit removes -> reverted


def load_settings(repo_root: Path) -> OutcomeSettings:
    settings = OutcomeSettings()
    try:
        from learnagent.core.config import load_config

        section = getattr(load_config(repo_root), "outcomes", None)
    except Exception:  # a broken config must not stop the hooks; `learnagent` itself reports it
        section = None
    for f in fields(settings):
        if section is not None and hasattr(section, f.name):
            setattr(settings, f.name, type(getattr(settings, f.name))(getattr(section, f.name)))
    return settings


# ---------------------------------------------------------------- events and verdicts

def add_event(store, episode_id: str, kind: str, *, commit: str | None = None, outcome: str | None = None,
              matched: int | None = None, total: int | None = None, detail: dict | None = None) -> bool:
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO outcome_events(episode_id, kind, commit_sha, outcome, matched, total, detail,"
        " created_at) VALUES (?,?,?,?,?,?,?,?)",
        (episode_id, kind, commit, outcome, matched, total, store.scrub(json.dumps(detail or {})), time.time()))
    return cur.rowcount > 0


def events(store, episode_id: str, kind: str | None = None) -> list[dict]:
    sql = "SELECT * FROM outcome_events WHERE episode_id = ?" + (" AND kind = ?" if kind else "") + " ORDER BY id"
    rows = store.conn.execute(sql, (episode_id, kind) if kind else (episode_id,)).fetchall()
    return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]


def set_verdict(store, episode_id: str, outcome: str, reason: str, *, by: str, commit: str | None = None) -> None:
    row = store.conn.execute("SELECT outcome, meta FROM episodes WHERE id = ?", (episode_id,)).fetchone()
    before = row["outcome"] if row else None
    meta = json.loads(row["meta"]) if row else {}
    store.set_outcome(episode_id, outcome, reason)
    extra = {"verdict_by": by}
    if before in OPEN and "open_outcome" not in meta:
        extra["open_outcome"] = before  # what a withdrawn automatic verdict goes back to
    store.update_meta(episode_id, **extra)
    add_event(store, episode_id, "verdict", commit=commit, outcome=outcome,
              detail={"from": before, "reason": reason, "by": by})


def explicit_verdict(store, episode_id: str, outcome: str, reason: str | None = None) -> None:
    """`learnagent accept/reject`: the user's word, which attribution never overrides."""
    set_verdict(store, episode_id, outcome, reason or f"{outcome} by the user", by=USER_BY)


def _episode_rows(store, sql: str, args) -> list[dict]:
    out = []
    for r in store.conn.execute(sql, args):
        ep = dict(r)
        ep["meta"] = json.loads(ep.get("meta") or "{}")
        out.append(ep)
    return out


_COLS = "id, outcome, final_diff, base_commit, branch, started_at, meta"


def open_candidates(store, repo_id: str, settings: OutcomeSettings, now: float) -> list[dict]:
    """Episodes a new commit may belong to: applied or kept, or decided by attribution in the window.
    A kept episode (never applied) is only credited with a commit made from its branch
    (`made_from_branch`); an applied one by its lines, wherever they were committed."""
    since = now - settings.reject_after_days * 86400
    rows = _episode_rows(store, f"SELECT {_COLS} FROM episodes WHERE repo_id = ? AND source != 'history'"
                                " AND final_diff IS NOT NULL AND final_diff != ''"
                                " AND outcome IN ('pending', 'kept', 'accepted', 'edited') AND started_at >= ?"
                                " ORDER BY started_at", (repo_id, since))
    return [ep for ep in rows if ep["outcome"] == "kept" or ep["meta"].get("applied")
            or ep["meta"].get("verdict_by") in (AUTO_BY, USER_BY)]


_SHA_WORD = re.compile(r"\b[0-9a-f]{7,40}\b")


def branch_tip(root: Path, ep: dict) -> str | None:
    """The agent's commit of an episode: recorded at the end of the run (meta["tip"]), or for
    older episodes the tip of its branch while the branch exists."""
    tip = ep["meta"].get("tip")
    if tip:
        return tip
    return gitutil.rev(root, ep["branch"]) if ep.get("branch") else None


def made_from_branch(root: Path, ep: dict, info: dict) -> bool:
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
    return [e["detail"] for e in events(store, episode_id, "match")]


def _may_credit(root: Path, ep: dict, info: dict) -> bool:
    """Applied episodes (and ones already credited) are matched by their lines; a kept one that was
    never applied only by a commit made from its branch: its lines in a commit are otherwise a
    coincidence (the user wrote the same fix), and crediting them would mark a branch the user
    still means to apply as accepted."""
    if ep["meta"].get("applied") or ep["meta"].get("verdict_by") in (AUTO_BY, USER_BY):
        return True
    return made_from_branch(root, ep, info)


def reverdict(store, root: Path, ep: dict, settings: OutcomeSettings, commit: str) -> list[str]:
    """Recompute an episode's verdict from all its (not rewritten) commit matches."""
    units = units_of(ep["final_diff"])
    cov = coverage(units, _matches(store, ep["id"]))
    updates: dict = {"attribution": cov.summary() | {"last_commit": commit}}
    auto = ep["meta"].get("verdict_by") != USER_BY
    new = None
    if auto and cov.fraction >= settings.accept_fraction:
        correction = correction_diff(root, ep["final_diff"], ep["base_commit"], commit)
        new = "accepted" if cov.all_exact and not correction else "edited"
        if correction:
            updates["correction"] = store.scrub(correction)
    elif auto and ep["outcome"] in ("accepted", "edited"):
        new = ep["meta"].get("open_outcome", "pending")  # a rewrite took the lines out again
    store.update_meta(ep["id"], **updates)
    if new is None or new == ep["outcome"]:
        return []
    share = f"{cov.covered}/{cov.total} lines committed"
    set_verdict(store, ep["id"], new, f"{share} in {commit[:10]}", by=AUTO_BY, commit=commit)
    ep["outcome"] = new
    return [f"learnagent: episode {ep['id']} {new} ({share})"]


# ---------------------------------------------------------------- commits

def _processed(store, repo_id: str, sha: str) -> bool:
    return store.conn.execute("SELECT 1 FROM processed_commits WHERE repo_id = ? AND sha = ?",
                              (repo_id, sha)).fetchone() is not None


def process_commit(store, root: Path, sha: str, settings: OutcomeSettings, now: float | None = None,
                   repo_id: str | None = None) -> list[str]:
    """Attribute one commit (a merge: its diff against the first parent) to open episodes; detect reverts.

    `root` is where git runs (a linked worktree is fine); `repo_id` defaults to its repo key.
    """
    now = now or time.time()
    repo_id = repo_id or home.repo_key(root)
    if _processed(store, repo_id, sha):
        return []
    info = gitutil.commit_info(root, sha)
    patches = None
    msgs: list[str] = []
    matched_now: set[str] = set()
    for ep in open_candidates(store, repo_id, settings, now):
        if info["committed_at"] < ep["started_at"] - CLOCK_SLACK_S:
            continue
        if patches is None:
            patches = parse_diff(gitutil.commit_diff(root, sha, info["parents"][0] if info["parents"] else None))
        units = units_of(ep["final_diff"])
        m = match_commit(units, patches)
        if not m.evidence:
            continue
        if not _may_credit(root, ep, info):
            continue
        covered = len(m.exact) + len(m.edited) + len(m.moved)
        add_event(store, ep["id"], "match", commit=sha, matched=covered, total=len(units), detail=m.to_json())
        matched_now.add(ep["id"])
        msgs += reverdict(store, root, ep, settings, sha)
    msgs += _detect_reverts(store, root, repo_id, info, patches, settings, skip=matched_now)
    store.conn.execute("INSERT OR IGNORE INTO processed_commits(repo_id, sha, processed_at) VALUES (?,?,?)",
                       (repo_id, sha, now))
    return msgs


def _detect_reverts(store, root, repo_id, info, patches, settings, skip: set[str]) -> list[str]:
    rows = _episode_rows(store, f"SELECT {_COLS} FROM episodes e WHERE repo_id = ?"
                                " AND outcome IN ('accepted', 'edited') AND EXISTS (SELECT 1 FROM outcome_events o"
                                " WHERE o.episode_id = e.id AND o.kind IN ('match', 'rewritten'))"
                                " ORDER BY started_at DESC LIMIT 200", (repo_id,))
    reverted_shas = _REVERTS.findall(info["message"])
    msgs = []
    for ep in rows:
        if ep["id"] in skip:
            continue
        commits = [e["commit_sha"] for e in events(store, ep["id"]) if e["kind"] in ("match", "rewritten")]
        why = None
        if any(c.startswith(r) for r in reverted_shas for c in commits):
            why = f"git revert in {info['sha'][:10]}"
        else:
            if patches is None:
                patches = parse_diff(gitutil.commit_diff(root, info["sha"], info["parents"][0] if info["parents"] else None))
            units = units_of(ep["final_diff"])
            share = removed_fraction(units, coverage(units, _matches(store, ep["id"])), patches)
            if share >= settings.revert_fraction:
                why = f"{share:.0%} of its committed lines removed in {info['sha'][:10]}"
        if why:
            add_event(store, ep["id"], "revert", commit=info["sha"], detail={"reason": why})
            set_verdict(store, ep["id"], "reverted", why, by=AUTO_BY, commit=info["sha"])
            msgs.append(f"learnagent: episode {ep['id']} reverted ({why})")
    return msgs


def process_rewrite(store, root: Path, pairs: list[tuple[str, str]], settings: OutcomeSettings,
                    repo_id: str | None = None) -> list[str]:
    """post-rewrite (amend, rebase): the new commits replace the old ones, never adding to them."""
    repo_id = repo_id or home.repo_key(root)
    msgs: list[str] = []
    for old, new in pairs:
        if old != new and gitutil.rev(root, new):
            msgs += process_commit(store, root, new, settings, repo_id=repo_id)
    touched: set[str] = set()
    for old, new in pairs:
        if old == new:
            continue
        for r in store.conn.execute("SELECT episode_id FROM outcome_events WHERE kind = 'match' AND commit_sha = ?",
                                    (old,)).fetchall():
            touched.add(r["episode_id"])
        store.conn.execute("UPDATE outcome_events SET kind = 'rewritten', detail = json_set(detail, '$.rewritten_to', ?)"
                           " WHERE kind = 'match' AND commit_sha = ?", (new, old))
        store.conn.execute("INSERT OR IGNORE INTO processed_commits(repo_id, sha, processed_at) VALUES (?,?,?)",
                           (repo_id, old, time.time()))
    head = gitutil.rev(root, "HEAD") or pairs[-1][1]
    for eid in sorted(touched):
        ep = _episode_rows(store, f"SELECT {_COLS} FROM episodes WHERE id = ?", (eid,))[0]
        if ep["outcome"] in OPEN + ("accepted", "edited"):
            msgs += reverdict(store, root, ep, settings, head)
    return msgs


def process_merge(store, root: Path, settings: OutcomeSettings, repo_id: str | None = None) -> list[str]:
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

def expire_stale(store, root: Path, settings: OutcomeSettings, now: float | None = None,
                 repo_id: str | None = None) -> list[str]:
    """Close the open episodes whose window has passed: edited if enough was committed, else rejected."""
    now = now or time.time()
    cutoff = now - settings.reject_after_days * 86400
    rows = _episode_rows(store, f"SELECT {_COLS} FROM episodes WHERE repo_id = ? AND source != 'history'"
                                " AND outcome IN ('pending', 'kept') AND status NOT IN ('running', 'interrupted')"
                                " AND final_diff IS NOT NULL AND final_diff != '' AND started_at < ?",
                         (repo_id or home.repo_key(root), cutoff))
    msgs = []
    head = gitutil.rev(root, "HEAD")
    days = f"{settings.reject_after_days:g} days"
    for ep in rows:
        units = units_of(ep["final_diff"])
        cov = coverage(units, _matches(store, ep["id"]))
        if cov.covered and cov.fraction >= settings.partial_fraction and head:
            correction = correction_diff(root, ep["final_diff"], ep["base_commit"], head)
            if correction:
                store.update_meta(ep["id"], correction=store.scrub(correction))
            verdict, why = "edited", f"{cov.covered}/{cov.total} lines committed within {days}"
        else:
            verdict, why = "rejected", f"not committed within {days}"
        set_verdict(store, ep["id"], verdict, why, by=AUTO_BY)
        msgs.append(f"learnagent: episode {ep['id']} {verdict} ({why})")
    return msgs
