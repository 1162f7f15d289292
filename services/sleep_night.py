"""`learnagent sleep`, one night: reserve -> plan -> train -> gate -> seal -> decide.

Each transition is one function below and ends by writing one row (store/sleep_steps.py), after
the work of its step is durable. The newest row of a candidate is its state; the next sleep takes
an interrupted or killed night up from it (nothing is inferred from which files exist):

- reserved, planned: training starts, or resumes from the trainer's checkpoint in the candidate's
  folder, on the split the plan recorded (episodes that came later wait for the next night);
- trained: the saved adapter is gated, not trained again;
- gated, sealed: `settle` seals and decides it from the gate result it recorded, before the night's
  own work. A candidate gated against an adapter that is no longer the promoted one is rejected as
  stale; one whose parent, method or model no longer matches the night's is rejected as abandoned.
Candidates made before the state table (no rows) are read once from their files (`_adopt_legacy`).

Under `accelerate launch` (learning/parallel.py) rank 0 runs the night as above and, just before
training, hands the other processes the whole training job (`TrainJob`: the items in rank 0's order,
the settings, the model and folders), so every process trains on the same data by construction: the
others never open the store or read the repository (episodes pushed or code committed meanwhile
cannot make them disagree), train their share (`train_share`) and write nothing: the registry, the
rows, the adapter and the gate are rank 0's.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository, StoredRepository
from learnagent.learning import parallel
from learnagent.core.errors import UsageError
from learnagent.learning.gate import GateConfig, GateResult
from learnagent.learning.registry import Registry, is_complete
from learnagent.learning.sleep import (CODE_CUTS, CODE_CUTS_PER_FILE, CODE_PREFIX_TOKENS, CODE_TARGET_LINES,
                                       LEGACY_PLAN, PARTIAL_MIN_STEPS, SleepOptions, SleepResult, already_tried,
                                       check_options, config_dict, episode_ids, is_tainted, nights_message,
                                       resolve_local_model, result_dict, sleep_lock, train_config, trainer)
from learnagent.store.records import AdapterVersion
from learnagent.store.sleep_steps import SleepState, SleepSteps

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainJob:
    """One candidate's training, whole: what rank 0 runs and hands to the other processes."""

    method: str
    model_path: str
    pairs: list  # tonight's training pairs, episodes' then code's, in the order `data_order` indexes
    replay: list
    config: object  # train_common.TrainConfig (steps already sized to the number of processes)
    out_dir: Path  # the candidate's folder (rank 0 alone writes into it)
    prev_adapter: Path | None  # the parent's folder: the student's start, the teacher, the anchor

    def run(self, progress, should_stop: Callable[[], bool] | None) -> dict:
        _, train_fn = trainer(self.method)
        return result_dict(train_fn(self.model_path, self.pairs, self.replay, prev_adapter=self.prev_adapter,
                                    out_dir=self.out_dir, config=self.config, progress=progress,
                                    should_stop=should_stop))


@dataclass
class Handoff:
    """Under `accelerate launch` (learning/parallel.py): rank 0 hands the other processes, once,
    the job to train with it, or None (tonight trains nothing, or rank 0 failed before training)."""

    world: int
    sent: bool = False

    def send(self, job: TrainJob | None) -> None:
        if self.world > 1 and not self.sent:
            self.sent = True
            parallel.broadcast_object(job)

    def receive(self) -> TrainJob | None:
        return parallel.broadcast_object()


@dataclass
class Night:
    """What every step of one night reads: where, with which options and model, and the store."""

    root: Path | None  # the checkout; None for a repository known only from the store (StoredRepository)
    opts: SleepOptions
    reg: Registry
    steps: SleepSteps
    say: Progress
    started: float
    spec: str  # the model spec, e.g. "smollm2"
    model_path: str  # its local folder
    handoff: Handoff = field(default_factory=lambda: Handoff(1))  # rank 0 -> the others, under a launcher
    ignore: IgnoreRules | None = None  # the checkout's .learnagentignore rules (from the Repository); None: no checkout


@dataclass
class Candidate:
    """A candidate adapter as its persisted steps describe it."""

    version: str
    state: SleepState
    reserved: dict  # parent, promoted (the adapter promoted when it was reserved), method, model
    plan: dict | None = None  # train, heldout (episode ids), steps
    trained: dict | None = None  # stats (the trainer's numbers), partial
    gated: dict | None = None  # metrics (what the registry seals), config (the training settings)


@dataclass
class Work:
    """Tonight's data: the split, the repository's code, and what training would take."""

    train: list
    heldout: list
    code: object  # code_pairs.CodeCorpus
    new_ids: set[str]
    tried: set[str]
    code_train: list = field(default_factory=list)
    replay: list = field(default_factory=list)
    config: object = None  # train_common.TrainConfig


def sleep_night(repo: Repository | StoredRepository, options: SleepOptions | None = None, *, store=None,
                progress: Progress | None = None, train_progress=None,
                time_up: Callable[[], bool] | None = None) -> SleepResult:
    """One sleep. `progress(message)` gets stage messages; `train_progress` goes to the trainer
    (None: its own rich bar, False: silent, or a rich Progress / callable(step, total, stats)).
    `time_up()` is a caller's own time limit, read like `--max-minutes` after every step.
    `repo`: the Repository the CLI resolved, or a StoredRepository of `store` (no checkout here: the
    code to learn from and gate on is what the store's accepted changes hold, code_pairs.mine_code)."""
    opts = check_options(options or SleepOptions())
    ranks = parallel.init()  # one process, or one of those `accelerate launch` started
    if not ranks.main:
        return train_share()
    started = time.monotonic()
    root = repo.work_tree  # None for a StoredRepository
    handoff = Handoff(ranks.world)
    own_store = store is None
    if own_store:
        from learnagent.store.episodes import Store

        store = Store()
    try:
        with sleep_lock(repo.adapters_dir):
            spec, model_path = resolve_local_model(opts.model, root)
            reg = Registry(store, repo)
            night = Night(root, opts, reg, store.sleep_steps(reg.repo_id), progress or (lambda _m: None),
                          started, spec, model_path, handoff, _ignore_rules(repo))
            result = _night(night, train_progress, time_up)
    finally:
        handoff.send(None)  # a night that ended before training (or failed): the others stop too
        if own_store:
            store.close()
        parallel.close()
    result.seconds = time.monotonic() - started
    return result


def train_share() -> SleepResult:
    """A process other than rank 0 under `accelerate launch`: waits for rank 0's job, trains its
    share of every step with it, and writes nothing. It opens no store and reads no repository: the
    data is rank 0's (`TrainJob`), so the processes cannot disagree on it."""
    ranks = parallel.init()
    started = time.monotonic()
    result = SleepResult(status="worker", message="")
    try:
        job = Handoff(ranks.world).receive()
        if job is not None:
            result.version = job.out_dir.name
            result.train = job.run(progress=False, should_stop=None)  # a stop is rank 0's, agreed each step
    finally:
        parallel.close()
    result.seconds = time.monotonic() - started
    return result


def _night(n: Night, train_progress, time_up) -> SleepResult:
    settle(n)
    parent, parent_folder = _parent(n)
    resume = _resumable(n, parent)
    work = survey(n, parent, resume)
    result = SleepResult(status="nothing-new", message="", parent=parent, train_episodes=len(work.new_ids),
                         heldout_episodes=len(episode_ids(work.heldout)))
    result.message = _nothing_to_do(work, parent, resume)
    if result.message:
        return result
    _training_data(n, work)
    result.replay_prompts = len(work.replay)
    if n.opts.dry_run:
        result.status, result.message = "dry-run", _dry_run_message(n, work, parent, resume)
        return result

    version = resume.version if resume else reserve(n, parent)
    result.version = version
    if resume:
        n.say(f"resuming interrupted candidate {version}")
    if resume is None or resume.state == "reserved":
        plan(n, version, work)
    if resume is None or resume.state in ("reserved", "planned"):
        stats, trained = train(n, version, work, parent_folder, train_progress, time_up)
        if not trained:
            result.status, result.train = "interrupted", stats
            result.message = nights_message(version, stats, n.opts.max_minutes)
            return result
    n.handoff.send(None)  # (trained on an earlier night) the others have nothing to train: they need not wait
    cand = load_candidate(n, version)
    result.train = cand.trained["stats"]
    result.gate = gate(n, cand, parent_folder, work)
    seal(n, version)
    result.status, result.message = decide(n, version)
    if cand.trained["partial"]:
        stats = cand.trained["stats"]
        result.message += f" (trained {stats['steps']} of {stats.get('target_steps')} planned steps: time was up)"
    return result


def _ignore_rules(repo: Repository | StoredRepository) -> IgnoreRules | None:
    return IgnoreRules.for_repository(repo) if isinstance(repo, Repository) else None


# ---------------------------------------------------------------- the transitions

def reserve(n: Night, parent: str | None) -> str:
    """-> reserved: the next version number, its folder, and what it starts from."""
    current = n.reg.current()
    version = n.reg.reserve(parent=parent, method=n.opts.method, base_model=n.spec)
    n.reg.folder(version).mkdir(parents=True, exist_ok=True)
    n.steps.record(version, "reserved", {"parent": parent, "promoted": current[0] if current else None,
                                         "method": n.opts.method, "model": n.spec})
    return version


def plan(n: Night, version: str, work: Work) -> None:
    """reserved -> planned: the train / held-out split this candidate keeps until it is decided."""
    n.steps.record(version, "planned", {"train": episode_ids(work.train), "heldout": episode_ids(work.heldout),
                                        "steps": work.config.steps})


def train(n: Night, version: str, work: Work, parent_folder: Path | None, train_progress,
          time_up: Callable[[], bool] | None) -> tuple[dict, bool]:
    """planned -> trained: the trainer runs (from its checkpoint, if any) until its steps are done or
    time is up. Returns (the trainer's numbers, whether it reached `trained`): stopped before
    PARTIAL_MIN_STEPS, the candidate stays planned for the next night (the trainer's checkpoint is its
    progress); stopped after, what was learnt is gated and the rest of the plan dropped."""
    from learnagent.learning.train_common import CHECKPOINT

    folder = n.reg.folder(version)
    job = TrainJob(n.opts.method, n.model_path, work.train + work.code_train, work.replay, work.config, folder,
                   parent_folder)
    deadline = n.started + n.opts.max_minutes * 60 if n.opts.max_minutes else None
    should_stop = None
    if deadline or time_up:
        def should_stop() -> bool:
            return bool((deadline and time.monotonic() > deadline) or (time_up and time_up()))
    n.say(f"training {version} ({n.opts.method}) on {len(work.train)} pairs from {len(work.new_ids)} episodes "
          f"and {len(work.code_train)} from the repository's code")
    n.handoff.send(job)  # the other processes of `accelerate launch` train the same job, each its share
    stats = job.run(train_progress, should_stop)
    partial = stats.get("stopped") == "should_stop" and (stats.get("steps") or 0) >= PARTIAL_MIN_STEPS
    if stats.get("interrupted") or not (folder / "adapter_config.json").is_file() \
            or (stats.get("stopped") and not partial):
        return stats, False
    if partial:
        shutil.rmtree(folder / CHECKPOINT, ignore_errors=True)
        n.say(f"time is up after {stats['steps']} of {stats.get('target_steps')} steps: gating what {version} "
              "learnt so far")
    n.steps.record(version, "trained", {"stats": stats, "partial": partial})
    return stats, True


def gate(n: Night, cand: Candidate, parent_folder: Path | None, work: Work) -> GateResult:
    """trained -> gated: the candidate against the adapter it started from (the base model on the
    first night) on the held-out code and episodes; the metrics to seal are recorded with the verdict."""
    from learnagent.runtime.loading import load_with_adapters
    from learnagent.learning.gate import run_gate

    version, parent = cand.version, cand.reserved["parent"]
    where = "" if n.root else ", from the store's accepted changes (no checkout)"
    n.say(f"gating {version} on the held-out code ({len(work.code.heldout)} documents{where}) and "
          f"{len(work.heldout)} held-out pairs")
    adapters = {version: n.reg.folder(version)} | ({parent: parent_folder} if parent else {})
    model, tokenizer = load_with_adapters(n.model_path, adapters)
    opts = n.opts
    result = run_gate(model, tokenizer, work.heldout, candidate=version, previous=parent, code=work.code,
                      config=opts.gate or GateConfig(drift_budget=opts.drift_budget, seed=opts.seed,
                                                     min_nll_gain=opts.min_nll_gain))
    del model
    metrics = result.as_metrics() | {"train": cand.trained["stats"], "heldout_ids": cand.plan["heldout"],
                                     "considered": cand.plan["train"], "model": n.spec,
                                     "method": cand.reserved["method"]}
    n.steps.record(version, "gated", {"metrics": metrics, "config": config_dict(work.config)})
    return result


def seal(n: Night, version: str) -> None:
    """gated -> sealed: base.json, metrics.json, lineage.json (the folder is complete) and the
    lineage rows, from what the plan and the gate recorded."""
    from learnagent.runtime.identity import base_identity, stamp_adapter

    cand = load_candidate(n, version)
    if cand.reserved.get("model") in (None, n.spec):  # (settled on a night run with another model: unstamped)
        # base.json: which base it belongs to (name + hash); loading it on another is a one-line error
        stamp_adapter(n.reg.folder(version), base_identity(n.model_path))
    n.reg.finish(version, metrics=cand.gated["metrics"], episode_ids=cand.plan["train"],
                 config=cand.gated.get("config") or {})
    n.steps.record(version, "sealed")


def decide(n: Night, version: str) -> tuple[str, str]:
    """sealed -> decided: promoted if it passed the gate against the adapter that is still the
    promoted one, else rejected. Returns (status, message)."""
    cand = load_candidate(n, version)
    metrics, was = cand.gated["metrics"], cand.reserved.get("promoted")
    current = n.reg.current()
    now = current[0] if current else None
    reason = metrics.get("reason") or "no gate result"
    if now == version or (metrics.get("accepted") and now == was):  # now == version: a kill after the
        n.reg.promote(version, reason)  # pointer moved; promoting again writes the table's reason too
        status = "promoted"
    else:
        if metrics.get("accepted"):
            reason = f"passed the gate against {was or 'the base model'}, which is no longer the promoted one"
        n.reg.reject(version, reason)
        status = "rejected"
    n.steps.record(version, "decided", {"status": status, "reason": reason})
    if status == "promoted":
        return status, f"promoted {version}: {reason}"
    return status, f"kept {cand.reserved['parent'] or 'the base model'}; {version} rejected: {reason}"


def abandon(n: Night, version: str, reason: str) -> None:
    """-> decided (rejected) without a gate: a candidate this night will not continue."""
    n.reg.reject(version, reason)
    n.steps.record(version, "decided", {"status": "rejected", "reason": reason})


# ---------------------------------------------------------------- reading the state

def load_candidate(n: Night, version: str) -> Candidate | None:
    """The candidate as its rows say, or None when sleep never recorded it."""
    steps = n.steps.history(version)
    if not steps:
        return None
    by_state = {s.state: s.data for s in steps}
    return Candidate(version, steps[-1].state, by_state.get("reserved", {}), by_state.get("planned"),
                     by_state.get("trained"), by_state.get("gated"))


def _candidates(n: Night) -> list[Candidate]:
    """Every undecided candidate of the repository, oldest first: its last row is not `decided` (its
    status may already say promoted: a kill after the pointer moved). Candidates made before the
    table are adopted."""
    out = []
    for row in sorted(n.reg.list(), key=lambda r: r.version):
        cand = load_candidate(n, row.version)
        if cand is None and row.status == "candidate":
            cand = _adopt_legacy(n, row)
        if cand is not None and cand.state != "decided":
            out.append(cand)
    return out


def _adopt_legacy(n: Night, row: AdapterVersion) -> Candidate:
    """Rows for a candidate from before the state table, from its files: complete (lineage.json) ->
    sealed with the metrics it was sealed with; a plan.json -> planned; else reserved."""
    version, folder = row.version, n.reg.folder(row.version)
    n.steps.record(version, "reserved", {"parent": row.parent, "promoted": row.parent,
                                         "method": row.method, "model": row.base_model})
    if is_complete(folder):
        n.steps.record(version, "gated", {"metrics": row.metrics})
        n.steps.record(version, "sealed")
    elif (folder / LEGACY_PLAN).is_file():
        split = json.loads((folder / LEGACY_PLAN).read_text())
        n.steps.record(version, "planned", {"train": split.get("train", []), "heldout": split.get("heldout", [])})
    return load_candidate(n, version)


def settle(n: Night) -> None:
    """Candidates an interrupted sleep left gated or sealed: sealed and decided now."""
    for cand in _candidates(n):
        if cand.state == "gated":
            seal(n, cand.version)
        if cand.state in ("gated", "sealed"):
            status, _ = decide(n, cand.version)
            if status == "promoted":
                n.say(f"promoted {cand.version}, which passed the gate before the last sleep was interrupted")


def _parent(n: Night) -> tuple[str | None, Path | None]:
    left = n.reg.leave_tainted()  # flagged by a developer's `forget` on a team store, which cannot move this pointer
    if left:
        now = n.reg.current()
        n.say(f"{left} was trained on forgotten episodes: {now[0] if now else 'the base model'} is promoted instead")
    current = n.reg.current()
    parent, folder = current if current else (None, None)
    if parent and is_tainted(n.reg, parent):
        # trained on forgotten episodes: never build on it; start again from the base model
        n.say(f"{parent} was trained on forgotten episodes; training from the base model instead")
        return None, None
    return parent, folder


def _resumable(n: Night, parent: str | None) -> Candidate | None:
    """The newest unfinished candidate (reserved, planned or trained) if tonight would make the same
    one (same parent, method and model); older or other ones are abandoned."""
    resume = None
    for cand in reversed(_candidates(n)):
        if cand.state not in ("reserved", "planned", "trained"):
            continue
        same = (cand.reserved.get("parent"), cand.reserved.get("method"), cand.reserved.get("model", n.spec))
        if resume is None and same == (parent, n.opts.method, n.spec):
            resume = cand
        else:
            abandon(n, cand.version,
                    "abandoned: interrupted, and the promoted adapter, method or model changed since")
    return resume


# ---------------------------------------------------------------- tonight's data

def survey(n: Night, parent: str | None, resume: Candidate | None) -> Work:
    """The episodes and code tonight would train on and hold out, and what the last rejected
    candidate considered (nothing written)."""
    from learnagent.learning import code_pairs
    from learnagent.learning import pairs as pairs_mod

    learnt = tuple(sorted(n.reg.trained_episode_ids(parent)))
    # the repository's own code: code-continuation pairs to train on, held-out files for the gate
    code = code_pairs.mine_code(n.root, n.reg.store, n.reg.repo_id, heldout_fraction=n.opts.heldout_fraction,
                                exclude_ids=learnt, ignore=n.ignore)
    train, heldout = pairs_mod.build_pairs(n.reg.store, n.reg.repo_id, conventions_root=n.root,
                                           heldout_fraction=n.opts.heldout_fraction, seed=n.opts.seed,
                                           exclude_ids=learnt, heldout_files=code.is_heldout_file)
    if resume and resume.plan:  # the split it started with (episodes that came later wait)
        everything = train + heldout
        train = [p for p in everything if str(p.episode_id) in set(resume.plan["train"])]
        heldout = [p for p in everything if str(p.episode_id) in set(resume.plan["heldout"])]
    # Held-out episodes are never trained on (pairs.is_heldout hashes the id), so only new
    # TRAINING episodes make a sleep worth running; the held-out set only grows.
    return Work(train, heldout, code, set(episode_ids(train)),
                already_tried(n.reg, parent, n.opts.method))


def _nothing_to_do(work: Work, parent: str | None, resume: Candidate | None) -> str:
    """Why tonight trains nothing ("" when it does)."""
    if not resume and (not work.new_ids or work.new_ids <= work.tried):
        since = f"since {parent}" if parent else "yet"
        return (f"nothing new to learn {since}: no new good episodes"
                + (" (the last candidate already tried these and was rejected)" if work.new_ids else ""))
    if not work.code.heldout:
        if work.code.root is None:
            raise UsageError(f"{len(work.new_ids)} new good episode(s) but the store holds no held-out code to "
                             "check an adapter on: without a checkout the gate measures the code the accepted "
                             "changes wrote, and they touched fewer than two code files; run sleep in a checkout")
        return (f"{len(work.new_ids)} new good episode(s) but no held-out code to check an adapter on "
                "(the repository needs two committed code files); commit more code first")
    return ""


def _training_data(n: Night, work: Work) -> None:
    from learnagent.learning import code_pairs
    from learnagent.learning import pairs as pairs_mod

    work.code_train = code_pairs.to_pairs(work.code.samples(per_doc=CODE_CUTS_PER_FILE, target_lines=CODE_TARGET_LINES,
                                                            prefix_tokens=CODE_PREFIX_TOKENS, cuts=CODE_CUTS))
    exclude = tuple(sorted(work.new_ids | set(episode_ids(work.heldout))))
    work.replay = pairs_mod.replay_prompts(n.reg.store, n.reg.repo_id, exclude, n.opts.replay) if n.opts.replay else []
    TrainConfig, _ = trainer(n.opts.method)
    work.config = train_config(TrainConfig, n.opts, len(work.train) + len(work.code_train))


def _dry_run_message(n: Night, work: Work, parent: str | None, resume: Candidate | None) -> str:
    version = resume.version if resume else "(next version)"
    return (f"would train {version} with {n.opts.method} on {len(work.train)} pairs "
            f"({len(work.new_ids)} episodes) and {len(work.code_train)} from the repository's code, "
            f"hold out {len(episode_ids(work.heldout))} episodes and {len(work.code.heldout_files)} code files, "
            f"replay {len(work.replay)}; {work.config.steps} steps; parent {parent or 'base model'}; model {n.spec}")
