"""What the OPSD trainer and the SFT baseline share: config, model set-up, the optimizer
and its schedule, atomic checkpoints, progress, and the outer step loop.

A method supplies only `micro_step(step, micro) -> (loss_tensor, stats)`; `run_training`
does accumulation, clipping, stepping, checkpointing, time limits and the progress bar.
"""

from __future__ import annotations

import math
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from learnagent.core.errors import LearnagentError

STUDENT = "student"
TEACHER = "teacher"
CHECKPOINT = "checkpoint"


# On-policy self-distillation as the reference design has it (sleep's default before the
# measurements of docs/OPSD.md "Learning that sticks"): the student's own samples, reverse KL on
# its top-k. Benchmarks and tests that study that objective ask for it by name.
# (Its other settings were lr 1e-4, skip_first 2, kl_clip 2.0, lambda_ret 0.1.)
ON_POLICY = {"targets": "student", "support": "student", "forward_weight": 0.0, "data_weight": 0.0}


@dataclass
class TrainConfig:
    # Defaults: the method chosen by experiment (docs/OPSD.md "Learning that sticks"): the real
    # continuation of each pair, read with the NLL of the text itself AND the forward KL to the
    # teacher (base + previous adapter reading c) on the teacher's top-k, LoRA lr 1e-3, and retention
    # on the anchor's own continuations of general prompts (weight 0.5).
    steps: int = 100  # optimizer steps (sleep sizes them to the data: sleep.plan_steps)
    samples_per_prompt: int = 4  # G completions per prompt (targets student / teacher)
    max_new_tokens: int = 64
    lr: float = 1e-3
    k: int = 20  # size of the KL's top-k support (+ tail bucket)
    support: str = "teacher"  # whose top-k: student | teacher | both (losses.support_mask)
    forward_weight: float = 1.0  # 0: reverse KL(student || teacher); 1: forward KL(teacher || student)
    targets: str = "data"  # the completions scored: student (on-policy samples) | teacher (samples of
    #   the teacher reading c: context distillation) | data (the pair's real continuation, teacher-forced)
    data_weight: float = 0.5  # targets "data": loss = (1 - w) * KL to the teacher + w * NLL of the real text
    skip_first: int = 0  # completion tokens left out of the KL (on-policy: opening format tokens)
    kl_clip: float | None = None  # per-token KL bound (nats); on-policy OPSD used 2.0
    lambda_ret: float = 0.5  # weight of the retention KL on replay prompts
    retention: str = "anchor"  # its samples: anchor (the anchor's, drawn once per run) | student (on-policy, each step)
    grad_accum: int = 1  # prompts per optimizer step
    rank: int = 16  # LoRA rank of a fresh adapter (alpha = 2 * rank)
    max_minutes: float | None = None
    seed: int = 0
    checkpoint_every: int = 25  # steps; 0 disables periodic checkpoints
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | float32 | bfloat16 | float16
    temperature: float = 1.0
    warmup_steps: int | None = None  # default: 5% of steps
    low_priority: bool = True  # os.nice(10) + best-effort ionice for this process


@dataclass
class TrainResult:
    method: str
    adapter_dir: Path
    steps: int
    target_steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    losses: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    kl_first: float | None = None
    kl_last: float | None = None
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    stopped: str | None = None  # None when all steps ran; else "max_minutes" | "should_stop"
    resumed_from: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        return d


# ---------------------------------------------------------------- environment

def lower_priority() -> None:
    """Be a polite background job: nice 10 and the lowest best-effort IO class, if possible."""
    try:
        current = os.nice(0)
        if current < 10:
            os.nice(10 - current)
    except OSError:
        pass
    if shutil.which("ionice"):
        subprocess.run(["ionice", "-c", "2", "-n", "7", "-p", str(os.getpid())], capture_output=True)


def load_student(model_path, prev_adapter: Path | None, config: TrainConfig, *, with_teacher: bool):
    """Base model + trainable "student" LoRA (from `prev_adapter`, or fresh) and, when asked
    and `prev_adapter` exists, the same adapter again as the frozen "teacher". One base.

    Loaded through runtime/loading.py on the placement `config.device` / `config.dtype` ask for
    ("auto": the policy `do` runs on); `prev_adapter` is checked (complete, trained on this base).
    `model_path` is a model folder (or hub id in the cache), or a loaded (model, tokenizer)
    whose model is then wrapped in place (LoRA layers are injected into it).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from learnagent.runtime.loading import attach_adapters, load_base
    from learnagent.runtime.placement import placement

    where = placement(config.device, config.dtype)
    if isinstance(model_path, tuple):  # an already loaded (base model, tokenizer): wrapped in place
        base, tokenizer = model_path
        base_path = None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        base.to(where.device)
    else:
        base, tokenizer = load_base(model_path, where)
        base_path = model_path
    if prev_adapter is not None:
        adapters = {STUDENT: Path(prev_adapter)} | ({TEACHER: Path(prev_adapter)} if with_teacher else {})
        model = attach_adapters(base, adapters, base_path=base_path, trainable=(STUDENT,), where=where)
    else:
        torch.manual_seed(config.seed)  # a fresh LoRA's A matrices are random: same seed, same start
        lora = LoraConfig(r=config.rank, lora_alpha=2 * config.rank, lora_dropout=0.0,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(base, lora, adapter_name=STUDENT)
    model.set_adapter(STUDENT)
    model.to(where.device)
    model.eval()  # no dropout anywhere: sampling and scoring see the same function
    return model, tokenizer


def data_order(n: int, step: int, micro: int, grad_accum: int, seed: int) -> int:
    """Index of the item used at (step, micro): a fresh seeded permutation every epoch.

    A pure function of its arguments, so a resumed run sees exactly the same data.
    """
    position = step * grad_accum + micro
    epoch, offset = divmod(position, n)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[offset]


def items_per_step(config: TrainConfig) -> int:
    """Items one optimizer step trains: grad_accum in each of the launcher's processes
    (learning/parallel.py); `data_order`'s stride, so N processes see what one process with
    grad_accum x N would."""
    from learnagent.learning import parallel

    return config.grad_accum * parallel.ranks().world


def trainable_parameters(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def make_optimizer(params: list, config: TrainConfig):
    """AdamW with linear warm-up then cosine decay to 10% of the peak rate."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, config.steps // 20)
    total = max(config.steps, 1)

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / max(warmup, 1))
        return ramp * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------- saving

def save_adapter(model, out_dir: Path) -> Path:
    """Write the student adapter's files straight into `out_dir` (PEFT would nest a named
    adapter in a sub-folder), replacing what was there atomically per file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A run killed mid-save leaves its temp folder (maybe a truncated .safetensors) here; the
    # resumed run saves into the same folder, which is later sealed and promoted: sweep it first.
    for stale in out_dir.glob(".save-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".save-") as tmp:
        model.save_pretrained(tmp, selected_adapters=[STUDENT])
        src = Path(tmp) / STUDENT
        for f in src.iterdir():
            os.replace(f, out_dir / f.name)
    return out_dir


def save_checkpoint(path: Path, model, optimizer, scheduler, step: int, extra: dict) -> None:
    """One file (trainable weights + optimizer + scheduler + step + RNG), temp + rename."""
    import torch

    path.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "weights": {n: p.detach().cpu() for n, p in trainable_parameters(model).items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".state-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path / "state.pt")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict | None:
    import torch

    file = path / "state.pt"
    if not file.is_file():
        return None
    state = torch.load(file, map_location="cpu", weights_only=False)
    params = trainable_parameters(model)
    missing = set(params) ^ set(state["weights"])
    if missing:
        raise LearnagentError(f"checkpoint {file} does not fit this model/adapter (e.g. {sorted(missing)[0]}); "
                              "delete it to start over")
    with torch.no_grad():
        for name, value in state["weights"].items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


# ---------------------------------------------------------------- progress

class _Progress:
    """Adapts the `progress` argument: a rich Progress (a task is added to it), a callable
    `progress(step, total, stats)`, False (silent), or None (a rich bar of our own)."""

    def __init__(self, progress, description: str, total: int, done: int):
        self.owned = None
        self.callback = None
        self.bar = None
        if progress is False:
            return
        if progress is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            progress = self.owned = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("loss {task.fields[loss]} kl {task.fields[kl]}"))
            progress.start()
        if hasattr(progress, "add_task"):
            self.bar = progress
            self.task = progress.add_task(description, total=total, completed=done, loss="-", kl="-")
        elif callable(progress):
            self.callback = progress

    def update(self, step: int, total: int, stats: dict) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{stats['loss']:.4f}", kl=f"{stats['kl']:.4f}")
        elif self.callback is not None:
            self.callback(step, total, stats)

    def close(self) -> None:
        if self.owned is not None:
            self.owned.stop()


# ---------------------------------------------------------------- the loop

def run_training(method: str, model, config: TrainConfig, out_dir: Path,
                 micro_step: Callable[[int, int], tuple], *, progress=None, should_stop=None) -> TrainResult:
    """Optimizer steps until `config.steps`, the time limit, or `should_stop()`.

    `micro_step(step, micro)` returns (loss / grad_accum already applied by us, stats with
    "kl" and "tokens"); it must be a pure function of (step, micro) for resume to replay
    the same data.
    """
    import torch

    from learnagent.learning import parallel

    if config.low_priority:
        lower_priority()
    ranks = parallel.ranks()  # several processes (accelerate launch): each its share, rank 0 writes
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT
    params = trainable_parameters(model)
    optimizer, scheduler = make_optimizer(list(params.values()), config)
    state = load_checkpoint(ckpt_dir, model, optimizer, scheduler)
    parallel.broadcast_parameters(list(params.values()))  # every process starts from rank 0's weights
    extra = state["extra"] if state else {"losses": [], "kls": [], "tokens": 0, "seconds": 0.0}
    step = state["step"] if state else 0
    resumed_from = step if state else None
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = _Progress(progress if ranks.main else False, f"{method} training", config.steps, step)
    started, stopped = time.monotonic(), None
    base_seconds = extra["seconds"]

    def snapshot():
        extra["seconds"] = base_seconds + time.monotonic() - started
        if ranks.main:
            save_checkpoint(ckpt_dir, model, optimizer, scheduler, step, extra)

    updating = False
    try:
        while step < config.steps:
            optimizer.zero_grad(set_to_none=True)
            step_loss, step_kl, step_tokens = 0.0, 0.0, 0
            for micro in parallel.share(config.grad_accum):  # one process: 0 .. grad_accum - 1
                loss, stats = micro_step(step, micro)
                (loss / config.grad_accum).backward()
                step_loss += float(loss.detach()) / config.grad_accum
                step_kl += stats["kl"] / config.grad_accum
                step_tokens += stats["tokens"]
            if ranks.world > 1:
                parallel.average_gradients(list(params.values()))
                step_loss, step_kl, step_tokens = parallel.sum_values(step_loss, step_kl, step_tokens)
                step_loss, step_kl, step_tokens = step_loss / ranks.world, step_kl / ranks.world, int(step_tokens)
            extra["tokens"] += step_tokens
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            updating = True  # weights and step counter change together; no snapshot in between
            optimizer.step()
            scheduler.step()
            step += 1
            updating = False
            extra["losses"].append(step_loss)
            extra["kls"].append(step_kl)
            bar.update(step, config.steps, {"loss": step_loss, "kl": step_kl, "lr": scheduler.get_last_lr()[0]})
            elapsed = time.monotonic() - started
            if step < config.steps and config.max_minutes is not None and elapsed > config.max_minutes * 60:
                stopped = "max_minutes"
            elif step < config.steps and should_stop is not None and should_stop():
                stopped = "should_stop"
            if ranks.world > 1 and step < config.steps and parallel.any_true(stopped is not None):
                stopped = stopped or "should_stop"  # all stop together: nobody waits on one that left
            if stopped or (config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps):
                snapshot()
            if stopped:
                break
    except KeyboardInterrupt:
        if step and not updating:  # Ctrl-C: keep what was learned so a rerun resumes here
            snapshot()
        raise
    finally:
        bar.close()
    if ranks.main:
        save_adapter(model, out_dir)
        if not stopped:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: nothing to resume
    seconds = base_seconds + time.monotonic() - started
    kls = extra["kls"]
    window = max(1, len(kls) // 10)
    return TrainResult(
        method=method, adapter_dir=out_dir, steps=step, target_steps=config.steps, tokens=extra["tokens"],
        seconds=round(seconds, 3), tokens_per_s=round(extra["tokens"] / seconds, 2) if seconds > 0 else 0.0,
        losses=extra["losses"], kls=kls,
        kl_first=sum(kls[:window]) / window if kls else None,
        kl_last=sum(kls[-window:]) / window if kls else None,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        peak_cuda_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        stopped=stopped, resumed_from=resumed_from)
