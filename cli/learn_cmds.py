"""`learnagent sleep`, `eval`, `report` and `adapters list|use|rollback`.

Heavy libraries (torch, transformers, peft, matplotlib) load inside the commands only.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from learnagent.core.errors import LearnagentError, UsageError


def _repo():
    """The Repository this command works on, resolved once here and passed down (a repository with
    no commits yet is a one-line error, as for every command that reads its history)."""
    from learnagent.agent.worktree import find_repo

    return find_repo(need_branch=False).repository


def _open_stored(store_url: str | None, repo_name: str | None):
    """(Store, StoredRepository) for `--store URL --repo NAME`: a repository trained from a store
    without a checkout here. No --store: the configured store (LEARNAGENT_DB / [store] url). One-line
    errors: a bad address or an unknown repository exit 2, a store that cannot be reached exit 1."""
    from learnagent.store.db import parse_target
    from learnagent.store.episodes import Store
    from learnagent.store.pg import safe_url

    if not repo_name:
        raise UsageError("--store needs --repo NAME (the repository as that store knows it: `learnagent team "
                         "status` shows the names pushed)")
    target = parse_target(store_url, "--store") if store_url else None
    if isinstance(target, Path) and not target.is_file():
        raise UsageError(f"--store {target}: no such store file")
    store = Store(target)
    repo = store.find_stored_repo(repo_name)
    if repo is None:
        known = store.repo_ids()
        where = safe_url(store.url) if store.dialect == "postgresql" else store.url
        store.close()
        listed = ", ".join(known[:8]) + (f" and {len(known) - 8} more" if len(known) > 8 else "")
        raise UsageError(f"--repo {repo_name}: the store {where} has no such repository"
                         + (f" (it has {listed})" if known else " (it holds no repositories)"))
    return store, repo


def _num(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0%}" if pct else f"{v:.4f}"


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


# ---------------------------------------------------------------- sleep

def sleep(
    method: str = typer.Option("opsd", "--method", metavar="opsd|sft", help="opsd (on-policy self-distillation) or sft (baseline)."),
    steps: int = typer.Option(None, "--steps", min=1, metavar="N", help="Training steps (default: one pass over the "
                              "training pairs, at least 8, at most 120)."),
    max_minutes: float = typer.Option(None, "--max-minutes", min=0.01, metavar="MINUTES", help="Stop training after this long: "
                                      "after at least 8 steps the adapter so far is gated, else the next sleep "
                                      "resumes it."),
    model: str = typer.Option(None, "--model", metavar="SPEC", help="Model spec (default: the repository config's)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be trained, train nothing."),
    drift_budget: float = typer.Option(0.5, "--drift-budget", min=0.0, metavar="NATS", help="Max KL to the base model on general "
                                       "prompts (nats/token) for promotion."),
    min_improvement: float = typer.Option(0.02, "--min-improvement", min=0.0, max=0.99, metavar="FRACTION",
                                          help="How much lower (relative) the new adapter's NLL on the held-out "
                                               "code must be than the previous adapter's."),
    install_schedule: bool = typer.Option(False, "--install-schedule", help="Run sleep nightly (cron or systemd)."),
    at: str = typer.Option(None, "--at", metavar="HH:MM", help="HH:MM for --install-schedule (default 03:00)."),
    uninstall_schedule: bool = typer.Option(False, "--uninstall-schedule", help="Remove the nightly run."),
    store_url: str = typer.Option(None, "--store", metavar="URL", help="Train REPO from this store "
                                  "(postgresql://… or an SQLite path) without a checkout here: with --repo."),
    repo_name: str = typer.Option(None, "--repo", metavar="NAME", help="The repository as the store knows it "
                                  "(its team name, e.g. github.com/acme/api); the code the gate measures is then "
                                  "what the store's accepted changes hold (docs/TEAM.md)."),
):
    """Distil recorded episodes into a repository adapter; promote it only if it passes the gate."""
    console = Console()
    if store_url is not None or repo_name is not None:
        if install_schedule or uninstall_schedule or at is not None:
            raise UsageError("--install-schedule goes with a checkout, not --store/--repo: schedule "
                             "`learnagent sleep --store URL --repo NAME` with cron yourself (docs/TEAM.md)")
        _sleep_stored(console, store_url, repo_name, method, steps, max_minutes, model, dry_run, drift_budget,
                      min_improvement)
        return
    repo = _repo()
    if install_schedule and uninstall_schedule:
        raise UsageError("--install-schedule and --uninstall-schedule exclude each other")
    if at is not None and not install_schedule:
        raise UsageError("--at only goes with --install-schedule")
    if install_schedule or uninstall_schedule:
        from learnagent.learning import schedule

        res = schedule.install(repo, at) if install_schedule else schedule.uninstall(repo)
        words = {"installed": "installed nightly sleep", "updated": "updated nightly sleep",
                 "unchanged": "nightly sleep already installed", "removed": "removed nightly sleep",
                 "absent": "no nightly sleep was installed"}
        console.print(f"{words[res.action]} ({res.backend}): {res.entry}", highlight=False, soft_wrap=True)
        if res.log:
            console.print(f"log: {res.log}", highlight=False)
        return
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night

    opts = SleepOptions(method=method, steps=steps, max_minutes=max_minutes, model=model, dry_run=dry_run,
                        drift_budget=drift_budget, min_nll_gain=min_improvement)
    result = sleep_night(repo, opts, progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
                         train_progress=_train_progress(console))
    _print_sleep(console, result, method)


def _sleep_stored(console: Console, store_url, repo_name, method, steps, max_minutes, model, dry_run, drift_budget,
                  min_improvement) -> None:
    from learnagent.learning import parallel
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night, train_share

    if not parallel.ranks().main:  # another process of `accelerate launch`: rank 0 reads the store and
        train_share()  # hands this one the training job; it prints nothing
        return
    store, repo = _open_stored(store_url, repo_name)
    try:
        console.print(f"[dim]sleep for {repo.key} from the store, no checkout: adapters in {repo.adapters_dir}[/]",
                      highlight=False)
        opts = SleepOptions(method=method, steps=steps, max_minutes=max_minutes, model=model, dry_run=dry_run,
                            drift_budget=drift_budget, min_nll_gain=min_improvement)
        result = sleep_night(repo, opts, store=store, progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
                             train_progress=_train_progress(console))
    finally:
        store.close()
    _print_sleep(console, result, method, code_from=", from the store's accepted changes (no checkout)")


def _train_progress(console: Console):
    """On a terminal: None (the trainer's own bar); without one (cron, a pipe, a log file): a line
    every few steps instead of nothing."""
    if console.is_terminal:
        return None
    from learnagent.cli.display import StepProgress

    lines = StepProgress(console, "training", "steps")
    return lambda step, total, stats: lines.update(step, total, f"loss {stats['loss']:.4f}, kl {stats['kl']:.4f}")


def _print_sleep(console: Console, result, method: str, code_from: str = "") -> None:
    if result.status == "worker":  # another process of `accelerate launch`: rank 0 reports
        return
    if result.status in ("nothing-new", "dry-run", "interrupted"):
        console.print(result.message, highlight=False)
        return
    table = Table(title=f"sleep: {result.version}", header_style="bold", show_header=False)
    table.add_column("what")
    table.add_column("value")
    g = result.gate
    c = g.comparison
    code = [("held-out code", f"{c.lines} lines in {c.documents} files{code_from}"),
            ("code NLL: new / previous", f"{_num(c.nll)} / {_num(c.prev_nll)} ({c.gain:+.1%})"),
            ("next-line exact: new / previous", f"{_num(c.exact, True)} / {_num(c.prev_exact, True)}")] if c else \
        [("held-out code", "none")]
    rows = [("method", method), ("parent", result.parent or "base model"),
            ("episodes trained / held out", f"{result.train_episodes} / {result.heldout_episodes}"),
            ("replay prompts", str(result.replay_prompts)), *code,
            ("held-out gap: new / previous", f"{_num(g.gap)} / {_num(g.prev_gap)}"),
            ("drift: chat / code (budget)", f"{_num(g.drift)} / {_num(g.code_drift)} ({g.drift_budget:g})"),
            ("train steps", str(result.train.get("steps", "?"))), ("time", f"{result.seconds:.0f} s")]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    colour = "green" if result.status == "promoted" else "yellow"
    console.print(f"[{colour}]{result.message}[/]", highlight=False)


# ---------------------------------------------------------------- eval

def eval_cmd(
    probes: Path = typer.Option(None, "--probes", metavar="FILE", help="JSON lines: {id, prompt, context, expect, mode}; mode "
                                "\"text\" continues the prompt as raw text, \"chat\" (default) answers it as a "
                                "user message. Optional: the held-out code is measured either way."),
    adapter: str = typer.Option(None, "--adapter", metavar="VERSION", help="Adapter version (default: the promoted one)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    samples: int = typer.Option(4, "--samples", min=1, metavar="N", help="Completions per probe and variant."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", min=1, metavar="N", help="Tokens per completion."),
    model: str = typer.Option(None, "--model", metavar="SPEC", help="Model spec (default: the repository config's)."),
    code: bool = typer.Option(True, "--code/--no-code", help="Measure what the model writes on the repository's "
                              "held-out code: per-token NLL and next-line exact match of the code the user wrote."),
    max_tokens: int = typer.Option(12_000, "--max-tokens", min=100, metavar="N", help="Held-out code tokens to measure "
                                   "(the same subset every time)."),
    store_url: str = typer.Option(None, "--store", metavar="URL", help="Evaluate REPO's adapters from this store, "
                                  "without a checkout here (with --repo): the held-out code is the store's."),
    repo_name: str = typer.Option(None, "--repo", metavar="NAME", help="The repository as the store knows it."),
):
    """Base, base + context and base + adapter: on the held-out code (NLL, exact match) and on probes
    (adherence, distillation gap); internalization ratios and drift."""
    from learnagent.learning import evaluate
    from learnagent.learning.registry import Registry, is_complete
    from learnagent.learning.sleep import resolve_local_model
    from learnagent.runtime.loading import load_with_adapters
    from learnagent.store.episodes import Store

    stored = store_url is not None or repo_name is not None
    local = None if stored else _repo()
    root = local.work_tree if local else None
    probe_list = evaluate.load_probes(probes) if probes is not None else None  # bad file: fail before loading
    if probe_list is None and not code:
        raise UsageError("nothing to measure: pass --probes FILE.jsonl, or drop --no-code")
    spec, model_path = resolve_local_model(model, root)
    store, repo = _open_stored(store_url, repo_name) if stored else (Store(), local)
    with store:
        reg = Registry(store, repo)
        if adapter:
            reg.get(adapter)  # one-line error for an unknown version
            folder = reg.folder(adapter)
            if not is_complete(folder):
                raise LearnagentError(f"adapter {adapter} never finished training; nothing to evaluate")
        else:
            current = reg.current()
            adapter, folder = current if current else (None, None)
        corpus = None
        if code:
            from learnagent.core.ignore import IgnoreRules
            from learnagent.learning.code_pairs import mine_code

            corpus = mine_code(root, store, reg.repo_id, ignore=IgnoreRules.for_repository(local) if local else None)
            if not corpus.heldout:
                if probe_list is None:
                    raise UsageError("no held-out code to measure in this repository yet (it needs two committed "
                                     "code files" + (", or, without a checkout, accepted changes to two" if stored
                                                     else "") + "); pass --probes FILE.jsonl")
                corpus = None
        # the device and dtype `do` runs on (runtime/placement.py); the adapter checked against this base
        model_obj, tokenizer = load_with_adapters(model_path, {adapter: folder} if adapter else {})
        report: dict = {"adapter": adapter, "model": spec}
        if probe_list is not None:
            report |= evaluate.evaluate(model_obj, tokenizer, probe_list, adapter=adapter, samples=samples,
                                        max_new_tokens=max_new_tokens)
            report["probe_source"] = str(probes)
        report["code"] = _measure_code(model_obj, tokenizer, corpus, adapter, max_tokens) if corpus else None
        if adapter:
            kept = ("variants", "internalization", "probes", "samples", "probe_source")
            reg.update_metrics(adapter, eval={k: report[k] for k in kept if k in report} | {"code": report["code"]})
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_eval(report)


def _measure_code(model, tokenizer, corpus, adapter: str | None, max_tokens: int) -> dict:
    import time

    from learnagent.learning.behaviour import MeasureConfig, measure

    err = Console(stderr=True)
    last = [0.0]

    def progress(variant: str, done: int, total: int) -> None:  # a line at most every 5 s: logs stay readable
        if time.monotonic() - last[0] > 5 or done == total:
            last[0] = time.monotonic()
            err.print(f"[dim]held-out code, {variant}: {done}/{total} documents[/]", highlight=False)

    report, _lines = measure(model, tokenizer, corpus, adapter=adapter, config=MeasureConfig(max_tokens=max_tokens),
                             progress=progress)
    return report.as_dict()


def _print_eval(report: dict) -> None:
    console = Console()
    labels = {"base": "base", "context": "base + context (ceiling)", "adapter": "base + adapter"}
    adapter = report["adapter"] or "(none promoted)"
    if "variants" in report:
        title = f"probes: {report['probes']} × {report['samples']} samples, adapter {adapter}"
        table = Table(title=title, header_style="bold")
        for col in ("variant", "adherence", "gap (nats/tok)", "drift (nats/tok)"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for name, m in report["variants"].items():
            table.add_row(labels[name], _num(m["adherence"], True), _num(m["gap"]), _num(m["drift"]))
        console.print(table)
        ratios = report["internalization"]
        console.print(f"internalization: adherence {_num(ratios['adherence'])}, gap {_num(ratios['gap'])} "
                      "(1 = the adapter does without context what the context does; 0 = nothing learnt)",
                      highlight=False)
    code = report.get("code")
    if code:
        first = next(iter(code["variants"].values()))
        table = Table(title=f"held-out code: {first['lines']} lines ({first['tokens']} tokens) in "
                            f"{code['documents']} documents, adapter {adapter}", header_style="bold")
        for col in ("variant", "NLL (nats/tok)", "next-line exact"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for name, m in code["variants"].items():
            table.add_row(labels[name], _num(m["nll"]), _num(m["exact"], True))
        console.print(table)
        ratios = code["internalization"]
        drift = f"; drift on unrelated code {_num(code['code_drift'])} nats/tok" if code.get("code_drift") is not None \
            else ""
        console.print(f"internalization: NLL {_num(ratios['nll'])}, exact match {_num(ratios['exact'])}{drift}",
                      highlight=False)
    elif "variants" not in report:
        console.print("nothing measured")


# ---------------------------------------------------------------- report

def report_cmd(out: Path = typer.Option(None, "--out", metavar="FILE", help="Write the learning curve to FILE.png or FILE.html.")):
    """Learning curve over adapter versions, and acceptance / test-pass rates by adapter."""
    from learnagent.learning import report
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store

    repo = _repo()
    if out is not None and out.suffix.lower() not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {out}: use a .png or .html file name")
    with Store() as store:
        reg = Registry(store, repo)
        curve = report.adapter_curve(reg.list())
        rates = report.outcome_rates(store.rated_episodes(reg.repo_id))
    console = Console()
    table = Table(title=f"learning curve: {repo.work_tree.name}", header_style="bold")
    for col in ("version", "status", "episodes", "code NLL", "base NLL", "exact", "base exact", "gap", "prev gap",
                "drift", "adherence"):
        table.add_column(col, justify="left" if col in ("version", "status") else "right")
    for p in curve:
        table.add_row(p["version"], p["status"], str(p["episodes"]), _num(p["code_nll"]), _num(p["base_code_nll"]),
                      _num(p["code_exact"], True), _num(p["base_code_exact"], True), _num(p["gap"]),
                      _num(p["prev_gap"]), _num(p["drift"]), _num(p["adherence"], True))
    console.print(table if curve else "no adapters yet: run `learnagent sleep`")
    rt = Table(title="episodes by the adapter the agent ran with", header_style="bold")
    for col in ("adapter", "episodes", "accepted", "tests passed"):
        rt.add_column(col, justify="left" if col == "adapter" else "right")
    for g in rates:
        rt.add_row(g["adapter"], str(g["episodes"]), _num(g["acceptance"], True), _num(g["test_pass"], True))
    console.print(rt if rates else "no `learnagent do` episodes yet")
    if out is not None:
        path = report.write_report(out, curve, rates, f"learnagent learning curve: {repo.work_tree.name}")
        console.print(f"wrote {path}", highlight=False)


# ---------------------------------------------------------------- adapters

adapters_app = typer.Typer(help="List, choose and roll back repository adapters.", no_args_is_help=True)


@adapters_app.command("list")
def adapters_list(as_json: bool = typer.Option(False, "--json"),
                  store_url: str = typer.Option(None, "--store", metavar="URL",
                                                help="The adapters of REPO trained from this store (with --repo)."),
                  repo_name: str = typer.Option(None, "--repo", metavar="NAME",
                                                help="The repository as the store knows it.")):
    """Every adapter of this repository with its status and metrics."""
    from learnagent.learning.registry import list_adapters

    from learnagent.store.records import as_json as record_json

    if store_url is not None or repo_name is not None:
        store, repo = _open_stored(store_url, repo_name)
        try:
            rows = list_adapters(repo, store)
        finally:
            store.close()
    else:
        rows = list_adapters(_repo())
    if as_json:
        print(json.dumps([record_json(r) for r in rows], indent=2, default=str))
        return
    if not rows:
        Console().print("no adapters yet: run `learnagent sleep`")
        return
    from learnagent.learning.registry import code_metrics

    table = Table(title="adapters", header_style="bold")
    numeric = ("episodes", "code NLL", "exact", "gap", "drift")
    for col in ("version", "status", "parent", "method") + numeric + ("created", "reason"):
        table.add_column(col, justify="right" if col in numeric else "left")
    colour = {"promoted": "green", "rejected": "red", "retired": "dim", "candidate": "yellow"}
    for r in rows:
        m = r.metrics
        code = ((code_metrics(m) or {}).get("variants") or {}).get("adapter") or {}
        status = r.status + (" (tainted)" if r.tainted else "")
        table.add_row(r.version, f"[{colour.get(r.status, '')}]{status}[/]", r.parent or "-", r.method,
                      str(r.episodes), _num(code.get("nll")), _num(code.get("exact"), True), _num(m.get("gap")),
                      _num(m.get("drift")), _when(r.created_at), r.reason or "")
    Console().print(table)


def _registry_store(store_url: str | None, repo_name: str | None):
    """(Store, repository) for `adapters use|rollback`: the checkout's, or `--store URL --repo NAME`'s
    (the team's GPU box, no checkout; a running `serve` there gets the adapter: docs/TEAM.md)."""
    from learnagent.store.episodes import Store

    if store_url is not None or repo_name is not None:
        return _open_stored(store_url, repo_name)
    return Store(), _repo()


_STORE_OPTION = typer.Option(None, "--store", metavar="URL", help="The adapters of REPO trained from this store "
                                                                  "(with --repo; no checkout needed).")
_REPO_OPTION = typer.Option(None, "--repo", metavar="NAME", help="The repository as the store knows it.")


@adapters_app.command("use")
def adapters_use(version: str = typer.Argument(..., metavar="VERSION", help="The version to promote, e.g. v0003."),
                 store_url: str = _STORE_OPTION, repo_name: str = _REPO_OPTION):
    """Promote an existing adapter by hand."""
    from learnagent.learning.registry import Registry

    store, repo = _registry_store(store_url, repo_name)
    with store:
        Registry(store, repo).use(version)
    Console().print(f"now using {version}", highlight=False)


@adapters_app.command("rollback")
def adapters_rollback(store_url: str = _STORE_OPTION, repo_name: str = _REPO_OPTION):
    """Go back to the previously promoted adapter (or the base model)."""
    from learnagent.learning.registry import Registry

    store, repo = _registry_store(store_url, repo_name)
    with store:
        target = Registry(store, repo).rollback()
    Console().print(f"rolled back to {target or 'the base model (no adapter)'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(sleep)
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)
    app.add_typer(adapters_app, name="adapters")
