"""`learnagent report`: the learning curve of a repository.

Two views from the store:
- per adapter version (from the registry's stored metrics): what it writes on held-out code
  (per-token NLL and next-line exact match, beside the base model and the base model reading
  the retrieved context, learning/behaviour.py), the held-out distillation gap (and the
  previous adapter's on the same prompts), drift, and eval adherence when `learnagent eval` was
  run on that version with probes;
- per adapter the agent RAN with (episodes.adapter_version; "base" for none): how many episodes,
  the share accepted (accepted/edited/kept among those with a decided outcome) and the share
  whose last test run passed — whether the agent actually got better at the repository.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from learnagent.learning.registry import code_metrics
from learnagent.store.records import AdapterVersion, RatedEpisode

GOOD_OUTCOMES = ("accepted", "edited", "kept")
CODE_VARIANTS = ("adapter", "base", "context")
DECIDED_OUTCOMES = GOOD_OUTCOMES + ("rejected", "reverted")


def adapter_curve(adapters: list[AdapterVersion]) -> list[dict]:
    """One point per finished adapter version, oldest first."""
    points = []
    for a in sorted(adapters, key=lambda r: r.version):
        m = a.metrics
        if not m:
            continue  # reserved or interrupted: nothing measured
        ev = (m.get("eval") or {}).get("variants", {})
        code = (code_metrics(m) or {}).get("variants", {})
        point = {"version": a.version, "status": a.status, "gap": m.get("gap"),
                 "prev_gap": m.get("prev_gap"), "drift": m.get("drift"),
                 "drift_budget": m.get("drift_budget"),
                 "adherence": (ev.get("adapter") or {}).get("adherence"),
                 "base_adherence": (ev.get("base") or {}).get("adherence"), "episodes": a.episodes}
        for variant in CODE_VARIANTS:  # code_nll / code_exact (the adapter), base_code_nll, context_code_exact, ...
            prefix = "" if variant == "adapter" else f"{variant}_"
            for metric in ("nll", "exact"):
                point[f"{prefix}code_{metric}"] = (code.get(variant) or {}).get(metric)
        points.append(point)
    return points


def outcome_rates(episodes: list[RatedEpisode]) -> list[dict]:
    """Acceptance and test-pass rates of `do` episodes (`Store.rated_episodes`), grouped by the adapter
    they ran with."""
    groups: dict[str, dict] = {}
    for r in episodes:
        key = r.adapter_version or "base"
        g = groups.setdefault(key, {"adapter": key, "episodes": 0, "decided": 0, "accepted": 0, "tested": 0,
                                    "passed": 0, "first": r.started_at})
        g["first"] = min(g["first"], r.started_at)
        g["episodes"] += 1
        if r.outcome in DECIDED_OUTCOMES:
            g["decided"] += 1
            g["accepted"] += r.outcome in GOOD_OUTCOMES
        if r.passed is not None:
            g["tested"] += 1
            g["passed"] += r.passed
    out = sorted(groups.values(), key=lambda g: g["first"])
    for g in out:
        g["acceptance"] = g["accepted"] / g["decided"] if g["decided"] else None
        g["test_pass"] = g["passed"] / g["tested"] if g["tested"] else None
    return out


def render_png(curve: list[dict], rates: list[dict], title: str = "learnagent learning curve") -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, (code, top, bottom) = plt.subplots(3, 1, figsize=(8, 11), constrained_layout=True)
    fig.suptitle(title)
    xs = [p["version"] for p in curve]
    _plot_code(code, xs, curve)
    if curve:
        for key, label, style in (("gap", "held-out gap (new adapter)", "o-"),
                                  ("prev_gap", "held-out gap (previous)", "x--"),
                                  ("drift", "drift (KL to base)", "s-")):
            ys = [p[key] if p[key] is not None else float("nan") for p in curve]
            top.plot(xs, ys, style, label=label)
        top.set_ylabel("nats / token")
        budgets = [p.get("drift_budget") for p in curve if p.get("drift_budget") is not None]
        if budgets:
            top.axhline(budgets[-1], color="tab:green", linestyle=":", linewidth=1, label="drift budget")
        for x, p in zip(xs, curve):
            if p["status"] == "rejected":
                top.annotate("rejected", (x, p["gap"] or 0), textcoords="offset points", xytext=(0, 8),
                             ha="center", fontsize=8, color="firebrick")
        handles, labels = top.get_legend_handles_labels()
        measured = [(x, p["adherence"]) for x, p in zip(xs, curve) if p["adherence"] is not None]
        if measured:
            twin = top.twinx()
            twin.plot([m[0] for m in measured], [m[1] for m in measured], "d:", color="purple",
                      label="eval adherence (adapter, no context)")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("adherence")
            more_h, more_l = twin.get_legend_handles_labels()
            handles, labels = handles + more_h, labels + more_l
        top.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
    else:
        top.text(0.5, 0.5, "no adapters yet: run `learnagent sleep`", ha="center", va="center")
    top.set_title("distillation gap on held-out episodes, and drift")
    if rates:
        labels = [g["adapter"] for g in rates]
        pos = range(len(labels))
        acc = [g["acceptance"] if g["acceptance"] is not None else 0 for g in rates]
        tp = [g["test_pass"] if g["test_pass"] is not None else 0 for g in rates]
        bottom.bar([p - 0.2 for p in pos], acc, width=0.4, label="accepted")
        bottom.bar([p + 0.2 for p in pos], tp, width=0.4, label="tests passed")
        bottom.set_xticks(list(pos), [f"{g['adapter']}\n({g['episodes']} ep.)" for g in rates])
        bottom.set_ylim(0, 1.05)
        bottom.legend(fontsize=8)
    else:
        bottom.text(0.5, 0.5, "no `learnagent do` episodes yet", ha="center", va="center")
    bottom.set_title("episodes by the adapter the agent ran with")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _plot_code(ax, xs: list[str], curve: list[dict]) -> None:
    """Held-out code per version: NLL of what the user wrote (adapter, base, base + context), and the
    adapter's next-line exact match on a second axis."""
    measured = [p for p in curve if p.get("code_nll") is not None]
    if not measured:
        ax.text(0.5, 0.5, "no held-out code measured yet", ha="center", va="center")
    else:
        for key, label, style in (("code_nll", "adapter (no context)", "o-"), ("base_code_nll", "base", "x--"),
                                  ("context_code_nll", "base + retrieved context (ceiling)", ":")):
            ax.plot(xs, [p.get(key) if p.get(key) is not None else float("nan") for p in curve], style, label=label)
        ax.set_ylabel("NLL of the user's code (nats / token)")
        for x, p in zip(xs, curve):
            if p["status"] == "rejected" and p.get("code_nll") is not None:
                ax.annotate("rejected", (x, p["code_nll"]), textcoords="offset points", xytext=(0, 8), ha="center",
                            fontsize=8, color="firebrick")
        handles, labels = ax.get_legend_handles_labels()
        twin = ax.twinx()
        for key, label, style in (("code_exact", "exact match: adapter", "d-"),
                                  ("base_code_exact", "exact match: base", "d--")):
            twin.plot(xs, [p.get(key) if p.get(key) is not None else float("nan") for p in curve], style,
                      color="purple", alpha=1.0 if key == "code_exact" else 0.4, label=label)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("next-line exact match")
        more_h, more_l = twin.get_legend_handles_labels()
        ax.legend(handles + more_h, labels + more_l, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3,
                  fontsize=8)
    ax.set_title("held-out code: what the model writes")


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0%}" if pct else f"{v:.4f}"


def render_html(png: bytes, curve: list[dict], rates: list[dict], title: str) -> str:
    """A self-contained page: the PNG embedded as a data URI, and the numbers as tables."""
    img = base64.b64encode(png).decode()
    rows_a = "".join(f"<tr><td>{html.escape(p['version'])}</td><td>{p['status']}</td>"
                     f"<td>{_fmt(p['code_nll'])}</td><td>{_fmt(p['base_code_nll'])}</td>"
                     f"<td>{_fmt(p['code_exact'], True)}</td><td>{_fmt(p['base_code_exact'], True)}</td>"
                     f"<td>{_fmt(p['gap'])}</td><td>{_fmt(p['prev_gap'])}</td><td>{_fmt(p['drift'])}</td>"
                     f"<td>{_fmt(p['adherence'], True)}</td></tr>" for p in curve)
    rows_e = "".join(f"<tr><td>{html.escape(g['adapter'])}</td><td>{g['episodes']}</td>"
                     f"<td>{_fmt(g['acceptance'], True)}</td><td>{_fmt(g['test_pass'], True)}</td></tr>" for g in rates)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><img alt='learning curve' src='data:image/png;base64,{img}'>"
            "<h2>Adapters</h2><table><tr><th>version</th><th>status</th><th>code NLL</th><th>base NLL</th>"
            "<th>exact</th><th>base exact</th><th>gap</th><th>prev gap</th>"
            f"<th>drift</th><th>adherence</th></tr>{rows_a}</table>"
            "<h2>Episodes by adapter</h2><table><tr><th>adapter</th><th>episodes</th><th>accepted</th>"
            f"<th>tests passed</th></tr>{rows_e}</table></body></html>\n")


def write_report(out: Path, curve: list[dict], rates: list[dict], title: str) -> Path:
    from learnagent.core.errors import UsageError

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {out}: use a .png or .html file name")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    png = render_png(curve, rates, title)
    if suffix == ".png":
        out.write_bytes(png)
    else:
        out.write_text(render_html(png, curve, rates, title))
    return out
