"""Aggregates for `learnagent status`: acceptance, test-pass and survival rates by week and by model.

- acceptance rate = (accepted + edited) / decided, where decided = accepted + edited + rejected
  + reverted (pending and kept episodes are not decided yet)
- test-pass rate  = episodes whose last test run (the final one when there is one) passed /
  episodes with a test run
- survival rate   = mean over measured episodes of the share of their committed lines still
  present N commits later (the latest measurement, see store/survival.py)

Imported history (source 'history') is left out: it is accepted by construction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from learnagent.store.records import DECIDED_OUTCOMES, RatedEpisode

DECIDED = DECIDED_OUTCOMES
BARS = "▁▂▃▄▅▆▇█"


def collect(store, repo_id: str) -> list[RatedEpisode]:
    return store.rated_episodes(repo_id)


def _rates(rows: list[RatedEpisode]) -> dict:
    counts = defaultdict(int)
    for r in rows:
        counts[r.outcome] += 1
    decided = sum(counts.get(o, 0) for o in DECIDED)
    tested = [r.passed for r in rows if r.passed is not None]
    surv = [r.survival for r in rows if r.survival is not None]
    return {
        "episodes": len(rows),
        "outcomes": dict(sorted(counts.items())),
        "decided": decided,
        "acceptance": round((counts.get("accepted", 0) + counts.get("edited", 0)) / decided, 3) if decided else None,
        "tested": len(tested),
        "test_pass": round(sum(bool(x) for x in tested) / len(tested), 3) if tested else None,
        "survival_measured": len(surv),
        "survival": round(sum(surv) / len(surv), 3) if surv else None,
    }


def week_of(ts: float) -> str:
    year, week, _ = datetime.fromtimestamp(ts, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def summarize(rows: list[RatedEpisode]) -> dict:
    weeks: dict[str, list[RatedEpisode]] = defaultdict(list)
    models: dict[tuple, list[RatedEpisode]] = defaultdict(list)
    for r in rows:
        weeks[week_of(r.started_at)].append(r)
        models[(r.model or "?", r.adapter_version or "base")].append(r)
    return {
        "totals": _rates(rows),
        "weeks": [{"week": w} | _rates(rs) for w, rs in sorted(weeks.items())],
        "by_model": [{"model": m, "adapter": a} | _rates(rs) for (m, a), rs in sorted(models.items())],
    }


def sparkline(values: list[float | None]) -> str:
    """One bar per value in 0..1; a gap (space) where there is no value."""
    out = []
    for v in values:
        out.append(" " if v is None else BARS[min(len(BARS) - 1, max(0, int(round(v * (len(BARS) - 1)))))])
    return "".join(out)
