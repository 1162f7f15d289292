"""The rules of a `learnagent sleep` night: its options and result, the plan's size, the model it
trains, one sleep per repository, and what an interrupted night tells the user.

The night itself (reserve -> plan -> train -> gate -> seal -> decide, each step persisted) is
services/sleep_night.py; the trainers are `opsd.train_opsd` / `sft.train_sft`, the gate is
gate.py, versions and the promoted pointer are registry.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from learnagent.core.errors import LearnagentError, ModelNotFound, UsageError
from learnagent.learning.gate import GateConfig, GateResult
from learnagent.learning.registry import Registry

METHODS = ("opsd", "sft")
CODE_CUTS_PER_FILE = 8  # code-continuation pairs per file (code_pairs.CodeCorpus.samples)
CODE_TARGET_LINES = 16  # lines of real continuation per pair (learn-method's bench: 16)
CODE_PREFIX_TOKENS = 512  # code before a cut a pair keeps (bounds the student's pass, with grad, on long
#   files; block-start cuts on the convention repository average ~50 tokens, so there it rarely binds)
CODE_CUTS = "blocks"  # cut where top-level blocks start (code_pairs.block_starts): docs/sleep.md "Plan"
LEGACY_PLAN = "plan.json"  # the split, in a candidate folder made before the sleep_steps table


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
    status: str  # nothing-new | dry-run | interrupted | promoted | rejected | worker (rank > 0 under a launcher)
    message: str
    version: str | None = None
    parent: str | None = None
    train_episodes: int = 0
    heldout_episodes: int = 0
    replay_prompts: int = 0
    gate: GateResult | None = None
    train: dict = field(default_factory=dict)
    seconds: float = 0.0


def check_options(opts: SleepOptions) -> SleepOptions:
    """One-line usage errors for options no night can run with (the CLI's own checks come first)."""
    if opts.method not in METHODS:
        raise UsageError(f"--method {opts.method}: use one of {', '.join(METHODS)}")
    if opts.steps is not None and opts.steps < 1:
        raise UsageError("--steps must be at least 1")
    if opts.max_minutes is not None and opts.max_minutes <= 0:
        raise UsageError("--max-minutes must be positive")
    return opts


def resolve_local_model(spec: str | None, repo_root: Path | None) -> tuple[str, str]:
    """(spec, local folder or HF id) for training; sleep cannot train a remote or scripted model.
    `repo_root` None (no checkout): the user's config and the defaults alone."""
    from learnagent.core.config import load_config
    from learnagent.core.modelhub import resolve_model

    spec = spec or load_config(repo_root).model.name
    backend, target = resolve_model(spec)
    if backend != "local":
        raise ModelNotFound(f"sleep trains a local model, but '{spec}' is a {backend} model "
                            f"(use --model smollm2 or --model local:PATH)")
    return spec, target


@contextlib.contextmanager
def sleep_lock(folder: Path):
    """One sleep per repository at a time (a nightly run and a manual one must not share a folder):
    `folder` is the repository's adapters folder (`repo.adapters_dir`)."""
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


def trainer(method: str):
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


def train_config(TrainConfig, options: SleepOptions, n_pairs: int):
    names = {f.name for f in fields(TrainConfig)}
    values = {"seed": options.seed} | dict(options.train_overrides)
    if options.steps is not None:
        values["steps"] = options.steps
    elif "steps" not in values:
        from learnagent.learning import parallel

        # one pass whatever the number of processes: N of them take 1/N of the steps, N times wider
        values["steps"] = plan_steps(n_pairs, values.get("grad_accum", 1) * parallel.ranks().world)
    unknown = set(values) - names
    if unknown:
        raise UsageError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**values)


def episode_ids(pairs) -> list[str]:
    return sorted({str(p.episode_id) for p in pairs})


def is_tainted(reg: Registry, version: str) -> bool:
    try:
        return reg.get(version).tainted
    except LearnagentError:  # promoted by hand-copied folders with no row: nothing known against it
        return False


def already_tried(reg: Registry, parent: str | None, method: str) -> set[str]:
    """Episodes the newest rejected candidate with the same parent and method already considered."""
    for row in reg.list():
        if row.parent == parent and row.method == method and row.status == "rejected":
            return set(row.metrics.get("considered", []))
    return set()


def result_dict(result) -> dict:
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


def config_dict(config) -> dict:
    try:
        return asdict(config)
    except TypeError:
        return dict(vars(config))
