"""`learnagent sleep`: episodes -> pairs -> train a candidate adapter -> gate -> register -> promote or not.

Orchestration only; the trainers are `opsd.train_opsd` / `sft.train_sft`, the gate is gate.py,
versions and the promoted pointer are registry.py.

Resume: the candidate's version is reserved in the store BEFORE training and its folder is the
trainer's `out_dir`, so an interrupted run (Ctrl-C, --max-minutes, a crash) leaves a 'candidate'
whose folder has no lineage.json yet. The next `sleep` finds it (`Registry.resumable`), reuses
the same folder (the trainer resumes from its checkpoint there) and the same split, recorded in
`plan.json` before training started. A candidate whose parent is no longer the promoted adapter
is stale and is rejected instead of resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from learnagent.core import home
from learnagent.core.errors import LearnagentError, ModelNotFound, UsageError
from learnagent.learning.gate import GateConfig, GateResult
from learnagent.learning.registry import Registry, is_complete, write_json_atomic

METHODS = ("opsd", "sft")
CODE_CUTS_PER_FILE = 8  # code-continuation pairs per file (code_pairs.CodeCorpus.samples)
CODE_TARGET_LINES = 16  # lines of real continuation per pair (learn-method's bench: 16)
CODE_PREFIX_TOKENS = 512  # code before a cut a pair keeps (bounds the student's pass, with grad, on long
#   files; block-start cuts on the convention repository average ~50 tokens, so there it rarely binds)
CODE_CUTS = "blocks"  # cut where top-level blocks start (code_pairs.block_starts): docs/sleep.md "Plan"
PLAN = "plan.json"

Progress = Callable[[str], None]


@dataclass
class SleepOptions:
    method: str = "opsd"
    steps: int | None = None  # None: the plan, plan_steps(number of training pairs)
    max_minutes: float | None = None
    model: str | None = None  # None: the repository config's model
    dry_run: bool = False
    drift_budget: float = GateConfig.drift_budget
    min_nll_gain: float = GateConfig.min_nll_gain  # the gate: relative drop of the held-out code NLL
    heldout_fraction: float = 0.2
    replay: int = 16  # replay prompts from already-learnt episodes (retention term)
    seed: int = 0
    train_overrides: dict = field(default_factory=dict)  # any TrainConfig field (tests, benchmarks)
    gate: GateConfig | None = None  # None: GateConfig(drift_budget=drift_budget, seed=seed)


@dataclass
class SleepResult:
    status: str  # nothing-new | dry-run | interrupted | promoted | rejected
    message: str
    version: str | None = None
    parent: str | None = None
    train_episodes: int = 0
    heldout_episodes: int = 0
    replay_prompts: int = 0
    gate: GateResult | None = None
    train: dict = field(default_factory=dict)
    seconds: float = 0.0


def resolve_local_model(spec: str | None, repo_root: Path) -> tuple[str, str]:
    """(spec, local folder or HF id) for training; sleep cannot train a remote or scripted model."""
    from learnagent.core.config import load_config
    from learnagent.core.modelhub import resolve_model

    spec = spec or load_config(repo_root).model.name
    backend, target = resolve_model(spec)
    if backend != "local":
        raise ModelNotFound(f"sleep trains a local model, but '{spec}' is a {backend} model "
                            f"(use --model smollm2 or --model local:PATH)")
    return spec, target


@contextlib.contextmanager
def sleep_lock(repo_root: Path):
    """One sleep per repository at a time (a nightly run and a manual one must not share a folder)."""
    folder = home.adapters_dir(repo_root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".sleep.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LearnagentError("another `learnagent sleep` is running for this repository") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _trainer(method: str):
    from learnagent.learning.train_common import TrainConfig

    if method == "opsd":
        from learnagent.learning.opsd import train_opsd as train
    elif method == "sft":
        from learnagent.learning.sft import train_sft as train
    else:
        raise UsageError(f"--method {method}: use one of {', '.join(METHODS)}")
    return TrainConfig, train


# The default plan: passes over the training pairs, not a fixed step count. A repository with
# 15 pairs gets 15 steps, not 100. Measured (docs/OPSD.md "Learning that sticks"): on the
# convention repository's 108 code pairs, 36 steps (a third of a pass, 3 CPU-minutes) of the
# default method moved the held-out next line past the context ceiling with drift 0.08-0.10
# nats/token, and drift grows with training (SFT: 0.27-0.40 after 80 steps), so one pass, capped.
PLAN_EPOCHS = 1
PLAN_MIN_STEPS = 8
PLAN_MAX_STEPS = 120
# A run stopped by its time limit (--max-minutes) after at least this many steps is gated as it is
# (a shorter plan, not a broken one: the first third of a pass already moved held-out behaviour,
# docs/OPSD.md); below it, the candidate waits for the next sleep to resume it (nights_message).
PARTIAL_MIN_STEPS = PLAN_MIN_STEPS


def plan_steps(n_pairs: int, grad_accum: int = 1) -> int:
    """Optimizer steps of the default plan for `n_pairs` training pairs."""
    steps = -(-PLAN_EPOCHS * n_pairs // max(grad_accum, 1))
    return max(PLAN_MIN_STEPS, min(PLAN_MAX_STEPS, steps))


def nights_message(version: str, train: dict, max_minutes: float | None) -> str:
    """What an interrupted sleep says: where it stopped and, at the rate it trained, how long (and
    how many nights of the same --max-minutes) the rest needs."""
    steps, target, seconds = train.get("steps") or 0, train.get("target_steps") or 0, train.get("seconds") or 0.0
    resume = "run `learnagent sleep` again to resume it"
    if not steps or not target or seconds <= 0:
        return f"stopped before {version} finished training; {resume}"
    rate = seconds / steps
    left = (target - steps) * rate
    text = (f"stopped {version} at step {steps} of {target} ({seconds / 60:.1f} min so far, {rate:.1f} s/step); "
            f"at this rate the rest needs about {left / 60:.0f} min")
    if max_minutes:
        nights = max(1, math.ceil(left / (max_minutes * 60)))
        text += f": {nights} more night{'s' if nights > 1 else ''} of --max-minutes {max_minutes:g}"
    return f"{text}; {resume}"


def _train_config(TrainConfig, options: SleepOptions, n_pairs: int):
    names = {f.name for f in fields(TrainConfig)}
    values = {"seed": options.seed} | dict(options.train_overrides)
    if options.steps is not None:
        values["steps"] = options.steps
    elif "steps" not in values:
        values["steps"] = plan_steps(n_pairs, values.get("grad_accum", 1))
    unknown = set(values) - names
    if unknown:
        raise UsageError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**values)


def _ids(pairs) -> list[str]:
    return sorted({str(p.episode_id) for p in pairs})


def run_sleep(repo_root: Path, options: SleepOptions | None = None, *, store=None,
              progress: Progress | None = None, train_progress=None,
              time_up: Callable[[], bool] | None = None) -> SleepResult:
    """One sleep. `progress(message)` gets stage messages; `train_progress` goes to the trainer
    (None: its own rich bar, False: silent, or a rich Progress / callable(step, total, stats)).
    `time_up()` is a caller's own time limit, read like `--max-minutes` after every step."""
    opts = options or SleepOptions()
    if opts.method not in METHODS:
        raise UsageError(f"--method {opts.method}: use one of {', '.join(METHODS)}")
    if opts.steps is not None and opts.steps < 1:
        raise UsageError("--steps must be at least 1")
    if opts.max_minutes is not None and opts.max_minutes <= 0:
        raise UsageError("--max-minutes must be positive")
    say = progress or (lambda _m: None)
    started = time.monotonic()
    own_store = store is None
    if own_store:
        from learnagent.store.episodes import Store

        store = Store()
    try:
        with sleep_lock(repo_root):
            result = _sleep(Path(repo_root).resolve(), opts, store, say, started, train_progress, time_up)
    finally:
        if own_store:
            store.close()
    result.seconds = time.monotonic() - started
    return result


def _sleep(root: Path, opts: SleepOptions, store, say: Progress, started: float, train_progress,
           time_up: Callable[[], bool] | None = None) -> SleepResult:
    from learnagent.learning import code_pairs
    from learnagent.learning import pairs as pairs_mod

    spec, model_path = resolve_local_model(opts.model, root)
    reg = Registry(store, root)
    _settle_sealed_candidates(reg, say)
    current = reg.current()
    parent, parent_folder = current if current else (None, None)
    if parent and _is_tainted(reg, parent):
        # trained on forgotten episodes: never build on it; start again from the base model
        say(f"{parent} was trained on forgotten episodes; training from the base model instead")
        parent, parent_folder = None, None

    resume = reg.resumable()
    plan = None
    if resume and (resume.parent != parent or resume.method != opts.method
                   or not (reg.folder(resume.version) / PLAN).is_file()):
        reg.reject(resume.version, "abandoned: interrupted, and the promoted adapter or method changed since")
        resume = None
    if resume:
        plan = json.loads((reg.folder(resume.version) / PLAN).read_text())

    learnt = reg.trained_episode_ids(parent)
    # the repository's own code: code-continuation pairs to train on, held-out files for the gate
    code = code_pairs.mine_code(root, store, reg.repo_id, heldout_fraction=opts.heldout_fraction,
                                exclude_ids=tuple(sorted(learnt)))
    train, heldout = pairs_mod.build_pairs(store, reg.repo_id, conventions_root=root,
                                           heldout_fraction=opts.heldout_fraction, seed=opts.seed,
                                           exclude_ids=tuple(sorted(learnt)), heldout_files=code.is_heldout_file)
    if plan:  # the same split as when this candidate started (episodes that came later wait)
        everything = train + heldout
        train = [p for p in everything if str(p.episode_id) in set(plan["train"])]
        heldout = [p for p in everything if str(p.episode_id) in set(plan["heldout"])]
    # Held-out episodes are never trained on (pairs.is_heldout hashes the id), so only new
    # TRAINING episodes make a sleep worth running; the held-out set only grows.
    new_ids = set(_ids(train))
    tried = _already_tried(reg, parent, opts.method)
    base = SleepResult(status="nothing-new", message="", parent=parent, train_episodes=len(new_ids),
                       heldout_episodes=len(_ids(heldout)))
    if not resume and (not new_ids or new_ids <= tried):
        since = f"since {parent}" if parent else "yet"
        base.message = (f"nothing new to learn {since}: no new good episodes"
                        + (" (the last candidate already tried these and was rejected)" if new_ids else ""))
        return base
    if not code.heldout:
        base.message = (f"{len(new_ids)} new good episode(s) but no held-out code to check an adapter on "
                        "(the repository needs two committed code files); commit more code first")
        return base
    code_train = code_pairs.to_pairs(code.samples(per_doc=CODE_CUTS_PER_FILE, target_lines=CODE_TARGET_LINES,
                                                        prefix_tokens=CODE_PREFIX_TOKENS, cuts=CODE_CUTS))
    exclude = tuple(sorted(new_ids | set(_ids(heldout))))
    replay = pairs_mod.replay_prompts(store, reg.repo_id, exclude, opts.replay) if opts.replay else []
    base.replay_prompts = len(replay)
    TrainConfig, train_fn = _trainer(opts.method)
    config = _train_config(TrainConfig, opts, len(train) + len(code_train))
    if opts.dry_run:
        version = resume.version if resume else "(next version)"
        base.status, base.version = "dry-run", None
        base.message = (f"would train {version} with {opts.method} on {len(train)} pairs "
                        f"({base.train_episodes} episodes) and {len(code_train)} from the repository's code, "
                        f"hold out {base.heldout_episodes} episodes and {len(code.heldout_files)} code files, "
                        f"replay {len(replay)}; {config.steps} steps; parent {parent or 'base model'}; model {spec}")
        return base

    if resume:
        version = resume.version
        say(f"resuming interrupted candidate {version}")
    else:
        version = reg.reserve(parent=parent, method=opts.method, base_model=spec)
    folder = reg.folder(version)
    folder.mkdir(parents=True, exist_ok=True)
    if not plan:
        write_json_atomic(folder / PLAN, {"train": _ids(train), "heldout": _ids(heldout), "parent": parent,
                                          "method": opts.method, "model": spec})
    base.version = version
    deadline = started + opts.max_minutes * 60 if opts.max_minutes else None
    if deadline or time_up:
        def should_stop() -> bool:
            return bool((deadline and time.monotonic() > deadline) or (time_up and time_up()))
    else:
        should_stop = None
    say(f"training {version} ({opts.method}) on {len(train)} pairs from {base.train_episodes} episodes "
        f"and {len(code_train)} from the repository's code")
    result = train_fn(model_path, train + code_train, replay, prev_adapter=parent_folder, out_dir=folder,
                      config=config, progress=train_progress, should_stop=should_stop)
    stats = _result_dict(result)
    base.train = stats
    partial = stats.get("stopped") == "should_stop" and (stats.get("steps") or 0) >= PARTIAL_MIN_STEPS
    if stats.get("interrupted") or not (folder / "adapter_config.json").is_file() \
            or (stats.get("stopped") and not partial):
        base.status = "interrupted"
        base.message = nights_message(version, stats, opts.max_minutes)
        return base
    if partial:  # out of time with enough steps done: gate what was learnt; the rest of the plan is dropped
        from learnagent.learning.train_common import CHECKPOINT

        shutil.rmtree(folder / CHECKPOINT, ignore_errors=True)
        say(f"time is up after {stats['steps']} of {stats.get('target_steps')} steps: gating what {version} "
            "learnt so far")

    say(f"gating {version} on the held-out code ({len(code.heldout)} documents) and {len(heldout)} held-out pairs")
    from learnagent.learning.evaluate import load_with_adapters
    from learnagent.learning.gate import run_gate

    adapters = {version: folder} | ({parent: parent_folder} if parent else {})
    model, tokenizer = load_with_adapters(model_path, adapters)
    gate = run_gate(model, tokenizer, heldout, candidate=version, previous=parent, code=code,
                    config=opts.gate or GateConfig(drift_budget=opts.drift_budget, seed=opts.seed,
                                                   min_nll_gain=opts.min_nll_gain))
    del model
    base.gate = gate
    metrics = gate.as_metrics() | {"train": stats, "heldout_ids": _ids(heldout),
                                   "considered": sorted(new_ids), "model": spec, "method": opts.method}
    reg.finish(version, metrics=metrics, episode_ids=_ids(train), config=_config_dict(config))
    if gate.accepted:
        reg.promote(version, gate.reason)
        base.status, base.message = "promoted", f"promoted {version}: {gate.reason}"
    else:
        reg.reject(version, gate.reason)
        kept = parent or "the base model"
        base.status, base.message = "rejected", f"kept {kept}; {version} rejected: {gate.reason}"
    if partial:
        base.message += f" (trained {stats['steps']} of {stats.get('target_steps')} planned steps: time was up)"
    return base


def _settle_sealed_candidates(reg: Registry, say) -> None:
    """A sleep killed after sealing a candidate (`finish`) but before promoting or rejecting it
    leaves a complete 'candidate' that nothing would ever decide: decide it now, from the gate
    result it was sealed with, if the adapter it was gated against is still the current one."""
    current = reg.current()
    for row in reg.candidates():
        version = row.version
        if not is_complete(reg.folder(version)):
            continue  # still training: `resumable` picks it up
        gate = row.metrics
        if gate.get("accepted") and row.parent == (current[0] if current else None):
            reg.promote(version, gate.get("reason", "passed the gate before an interruption"))
            current = reg.current()
            say(f"promoted {version}, which passed the gate before the last sleep was interrupted")
        else:
            reg.reject(version, gate.get("reason") or "interrupted after training; its gate result is stale")


def _is_tainted(reg: Registry, version: str) -> bool:
    try:
        return reg.get(version).tainted
    except LearnagentError:  # promoted by hand-copied folders with no row: nothing known against it
        return False


def _already_tried(reg: Registry, parent: str | None, method: str) -> set[str]:
    """Episodes the newest rejected candidate with the same parent and method already considered."""
    for row in reg.list():
        if row.parent == parent and row.method == method and row.status == "rejected":
            return set(row.metrics.get("considered", []))
    return set()


def _result_dict(result) -> dict:
    if result is None:
        return {}
    if isinstance(result, dict):
        return dict(result)
    if hasattr(result, "to_dict"):
        return result.to_dict()
    try:
        data = asdict(result)
    except TypeError:
        data = dict(vars(result))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()
            if isinstance(v, (int, float, str, bool, type(None), Path, list, dict))}


def _config_dict(config) -> dict:
    try:
        return asdict(config)
    except TypeError:
        return dict(vars(config))
