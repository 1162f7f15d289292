"""Subprocess worker for bench/bench_learning.py: one training run (or the base rows) per process.

    python bench/learning_workers.py SPEC.json

SPEC: {"job": "base" | "ours" | "sft" | "trl", "name", "model", "threads", "seed", "budget_minutes",
"eval_at": [CPU minutes of training], "config": {TrainConfig fields}, "replay": "none"|"general",
"result": path}. A training job stops at its budget of TRAINING CPU time (the process's CPU
seconds, evaluations not counted: the machine is shared, wall time is not comparable) and evaluates the adapter, without context, at each `eval_at` mark and at the end:
that is the learning curve (what it learned per CPU-minute) and what it forgot (drift, leaks).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning_eval as le  # noqa: E402
from vs_trl_workers import _peak_mb, load  # noqa: E402 (SmolLM2 in fp32 with the spec's threads and seed)


def cpu_now() -> float:
    """This process's CPU time (all its threads), seconds: what a training minute costs, whatever else
    the shared machine runs (wall time on 2 cores shared by several jobs varied 3x between runs)."""
    return time.process_time()


class Clock:
    """Training CPU time = this process's CPU time minus what evaluating took; evaluates at the marks."""

    def __init__(self, spec, tokenizer):
        self.spec, self.tokenizer = spec, tokenizer
        self.start = cpu_now()
        self.wall_start = time.monotonic()
        self.eval_seconds = 0.0
        self.marks = sorted(spec.get("eval_at", []))
        self.curve = []
        self.model = None
        self.adapter = None

    def train_minutes(self) -> float:
        return (cpu_now() - self.start - self.eval_seconds) / 60

    def evaluate(self, step: int, tokens: int, final: bool = False) -> dict:
        minutes = self.train_minutes()  # before the evaluation's own CPU time counts
        started = cpu_now()
        self.model.eval()
        row = le.evaluate_variant(self.model, self.tokenizer, self.spec["name"], adapter=self.adapter, general=final,
                                  **_limits(self.spec))
        point = {"train_minutes": minutes, "step": step, "tokens": tokens, "final": final, **row}
        self.curve.append(point)
        print(f"  [{self.spec['name']}] {point['train_minutes']:.1f} min step {step}: {le.summary(row)}",
              file=sys.stderr, flush=True)
        self.eval_seconds += cpu_now() - started
        return point

    def tick(self, step: int, tokens: int) -> None:
        while self.marks and self.train_minutes() >= self.marks[0]:
            self.marks.pop(0)
            self.evaluate(step, tokens)

    def over_budget(self) -> bool:
        return self.train_minutes() >= self.spec["budget_minutes"]


def _limits(spec) -> dict:
    """spec["smoke"]: a few probes and modules only (to check that a job runs, not to measure)."""
    if not spec.get("smoke"):
        return {}
    import convention_repo as cr

    return {"probes": cr.probes()[:4], "heldout": dict(list(cr.HELDOUT_MODULES.items())[:1])}


def _config(spec):
    from learnagent.learning.train_common import TrainConfig

    return TrainConfig(**({"seed": spec["seed"], "device": "cpu", "dtype": "float32", "low_priority": False,
                           "checkpoint_every": 0} | spec["config"]))


def replay_prompts(spec) -> list:
    from learnagent.learning.rollout import RETENTION_PROMPTS

    return list(RETENTION_PROMPTS) if spec.get("replay", "none") == "general" else []


def run_ours(spec, sft: bool = False):
    import learning_data

    from learnagent.learning import opsd, sft as sft_mod, train_common

    model, tokenizer = load(spec)
    clock = Clock(spec, tokenizer)
    clock.adapter = train_common.STUDENT
    inner = train_common.load_student

    def capture(*a, **kw):
        m, t = inner(*a, **kw)
        clock.model = m
        return m, t

    opsd.load_student = sft_mod.load_student = capture
    counted = {"tokens": 0, "step": 0}

    def progress(step, total, stats):
        counted["step"] = step
        print(f"  step {step} loss {stats['loss']:.4f} kl {stats['kl']:.4f} cpu-min {clock.train_minutes():.2f}",
              file=sys.stderr, flush=True)
        clock.tick(step, counted["tokens"])

    # tokens: the trainers' own count, read from their result at the end; per mark, steps are enough
    pairs = learning_data.code_pairs()
    config = _config(spec)
    train = sft_mod.train_sft if sft else opsd.train_opsd
    kwargs = {} if sft else {"accept": learning_data.accept if spec.get("accept") else None}
    clock.start, clock.wall_start = cpu_now(), time.monotonic()
    result = train((model, tokenizer), pairs, replay_prompts(spec), prev_adapter=None,
                   out_dir=Path(spec["out"]), config=config, progress=progress, should_stop=clock.over_budget,
                   **kwargs)
    counted["tokens"] = result.tokens
    train_seconds = clock.train_minutes() * 60
    clock.evaluate(result.steps, result.tokens, final=True)
    return {"steps": result.steps, "tokens": result.tokens, "train_seconds": train_seconds,
            "wall_seconds_with_evals": result.seconds,
            "losses": result.losses, "kls": result.kls, "curve": clock.curve, "peak_rss_mb": _peak_mb(),
            "pairs": len(pairs)}


def run_trl(spec):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer
    from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder

    import learning_data
    from learnagent.learning.rollout import text_with_context

    model, tokenizer = load(spec)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    clock = Clock(spec, tokenizer)
    cfg = spec["config"]

    class SameTeacherPrompt(DemonstrationTeacherContextBuilder):
        """The teacher reads c as ours does in text mode: c, one blank line, x."""

        def _compose_teacher_prompt(self, prompt, privileged_context):
            return text_with_context(prompt, self._stringify_privileged_context(privileged_context))

    class Trainer(SDFTTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.teacher_context_builder = SameTeacherPrompt(self)

    pairs = learning_data.code_pairs()
    data = Dataset.from_list([{"prompt": p.prompt, "privileged_context": p.context} for p in pairs])
    G = cfg.get("samples_per_prompt", 4)
    args = SDFTConfig(
        output_dir=str(Path(spec["out"]) / "trl-run"), per_device_train_batch_size=G, num_generations=G,
        gradient_accumulation_steps=1, max_steps=cfg["steps"], learning_rate=cfg["lr"], weight_decay=0.0,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=max(1, cfg["steps"] // 20), max_grad_norm=1.0, max_completion_length=cfg["max_new_tokens"],
        max_prompt_length=None, temperature=1.0, top_k=0, top_p=1.0, distillation_mode="topk_logits",
        distillation_topk=cfg.get("k", 20), distillation_add_tail=True, distillation_alpha=1.0,
        num_loss_tokens_to_skip=cfg.get("skip_first", 2), teacher_model_kind="base", gradient_checkpointing=False,
        bf16=False, use_cpu=True, logging_steps=1, save_strategy="no", report_to="none", seed=spec["seed"],
        disable_tqdm=True, dataloader_pin_memory=False)
    peft_config = LoraConfig(r=cfg["rank"], lora_alpha=2 * cfg["rank"], lora_dropout=0.0,
                             target_modules="all-linear", task_type="CAUSAL_LM")

    class Marks(TrainerCallback):
        def on_step_end(self, _args, state, control, **kw):
            clock.tick(state.global_step, 0)
            if clock.over_budget():
                control.should_training_stop = True

    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=[Marks()])
    clock.model, clock.adapter = trainer.model, "default"
    clock.start, clock.wall_start = cpu_now(), time.monotonic()
    trainer.train()
    seconds = clock.train_minutes() * 60
    with torch.no_grad():
        clock.evaluate(trainer.state.global_step, 0, final=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "tokens": None, "train_seconds": seconds, "losses": losses,
            "curve": clock.curve, "peak_rss_mb": _peak_mb(), "pairs": len(pairs)}


def run_base(spec):
    model, tokenizer = load(spec)
    model.eval()
    rows = {}
    for variant in ("base", "context"):
        rows[variant] = le.evaluate_variant(model, tokenizer, variant, **_limits(spec))
        print(f"  [{variant}] {le.summary(rows[variant])}", file=sys.stderr, flush=True)
    return {"rows": rows, "peak_rss_mb": _peak_mb()}


JOBS = {"base": run_base, "ours": run_ours, "sft": lambda s: run_ours(s, sft=True), "trl": run_trl}

if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = JOBS[spec["job"]](spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=1, default=str))
