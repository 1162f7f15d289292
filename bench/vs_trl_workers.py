"""Subprocess workers for bench/bench_vs_trl.py: one trainer (or the evaluation) per process,
so each process's peak RSS (ru_maxrss) belongs to that trainer alone.

    python bench/vs_trl_workers.py SPEC.json     # SPEC: {"job": "opsd"|"sft"|"trl"|"eval", ...}

Each training worker loads SmolLM2 in float32 on the CPU itself, records the RSS after
loading, trains, saves the adapter to spec["out"], and writes spec["result"] (JSON) with
tokens, seconds, peak RSS and a time breakdown (sampling / teacher scoring / student
forward / the rest = backward + optimizer + bookkeeping), measured by wrapping the
trainers' own functions (no edits to either library).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Timers:
    def __init__(self):
        self.t = {"sampling": 0.0, "teacher": 0.0, "student_fwd": 0.0}

    @contextmanager
    def on(self, key):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.t[key] += time.perf_counter() - start

    def wrap(self, fn, key_of):
        def wrapped(*a, **kw):
            with self.on(key_of()):
                return fn(*a, **kw)
        return wrapped


def load(spec):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    return model, tokenizer


def our_config(spec, steps):
    from learnagent.learning.train_common import ON_POLICY, TrainConfig

    return TrainConfig(**ON_POLICY, steps=steps, samples_per_prompt=spec["G"], max_new_tokens=spec["max_new_tokens"],
                       lr=spec["lr"], k=spec["k"], skip_first=spec["skip_first"], kl_clip=spec["kl_clip"],
                       lambda_ret=spec["lambda_ret"], grad_accum=1, rank=spec["rank"], seed=spec["seed"],
                       checkpoint_every=0, device="cpu", dtype="float32", warmup_steps=spec["warmup_steps"],
                       low_priority=False)  # no nice(10): TRL runs at normal priority too


def _pairs(spec):
    from learnagent.learning.pairs import Pair

    return [Pair(r["id"], r["prompt"], r["context"], r["target"]) for r in spec["train"]]


def run_opsd(spec):
    import torch

    from learnagent.learning import opsd

    model, tokenizer = load(spec)
    rss_loaded = _rss_mb()
    timers = Timers()
    sampled = {"tokens": 0}
    inner_sample = timers.wrap(opsd.sample, lambda: "sampling")

    def counting_sample(*a, **kw):
        out = inner_sample(*a, **kw)
        sampled["tokens"] += sum(len(c) for c in out)
        return out

    opsd.sample = counting_sample
    marks = [(time.perf_counter(), 0)]

    def progress(step, total, stats):
        marks.append((time.perf_counter(), sampled["tokens"]))
        _progress(step, total, stats)
    opsd.build_prefix_cache = timers.wrap(opsd.build_prefix_cache, lambda: "teacher")
    opsd.encode_prefix = timers.wrap(opsd.encode_prefix, lambda: "student_fwd")  # the student's pass over x
    opsd.batch_completion_logprobs = timers.wrap(
        opsd.batch_completion_logprobs, lambda: "student_fwd" if torch.is_grad_enabled() else "teacher")
    started = time.perf_counter()
    from learnagent.learning.rollout import GENERAL_PROMPTS

    replay = GENERAL_PROMPTS if spec["lambda_ret"] else []  # TRL's SDFT has no retention term
    result = opsd.train_opsd((model, tokenizer), _pairs(spec), replay,
                             prev_adapter=None, out_dir=Path(spec["out"]), config=our_config(spec, spec["steps"]),
                             progress=progress)
    wall = time.perf_counter() - started
    return {"tokens": result.tokens, "seconds": result.seconds, "wall_incl_setup": wall, "steps": result.steps,
            "losses": result.losses, "kls": result.kls, "rss_loaded_mb": rss_loaded, "peak_rss_mb": _peak_mb(),
            "breakdown": timers.t, "marks": marks}


def run_sft(spec):
    from learnagent.learning.sft import target_ids, train_sft

    model, tokenizer = load(spec)
    rss_loaded = _rss_mb()
    pairs = _pairs(spec)
    mean_len = sum(len(target_ids(tokenizer, p.target)) for p in pairs) / len(pairs)
    steps = spec.get("steps") or max(1, math.ceil(spec["token_budget"] / mean_len))  # equal student tokens
    started = time.perf_counter()
    result = train_sft((model, tokenizer), pairs, prev_adapter=None, out_dir=Path(spec["out"]),
                       config=our_config(spec, steps), progress=_progress)
    return {"tokens": result.tokens, "seconds": result.seconds, "wall_incl_setup": time.perf_counter() - started,
            "steps": result.steps, "losses": result.losses, "rss_loaded_mb": rss_loaded, "peak_rss_mb": _peak_mb(),
            "mean_target_tokens": mean_len}


def run_trl(spec):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer
    from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder

    from learnagent.learning.rollout import context_message

    model, tokenizer = load(spec)
    tokenizer.padding_side = "left"
    rss_loaded = _rss_mb()
    timers = Timers()
    counted = {"tokens": 0}

    class SameTeacherPrompt(DemonstrationTeacherContextBuilder):
        """The teacher reads c exactly as ours does (a system message before x), so both
        trainers distil from token-identical teacher prompts (TRL's default template appends
        c to the last user turn instead)."""

        def _compose_teacher_prompt(self, prompt, privileged_context):
            return [context_message(self._stringify_privileged_context(privileged_context))] + list(prompt)

    class TimedSDFT(SDFTTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.teacher_context_builder = SameTeacherPrompt(self)

        def _generate(self, prompt_ids):
            with timers.on("sampling"):
                return super()._generate(prompt_ids)

        def _prepare_training_batch(self, inputs):
            batch = super()._prepare_training_batch(inputs)
            counted["tokens"] += int(batch["raw_completion_lengths"].sum())
            return batch

        def _forward_logits(self, model, input_ids, attention_mask, logits_to_keep):
            with timers.on("student_fwd" if torch.is_grad_enabled() else "teacher"):
                return super()._forward_logits(model, input_ids, attention_mask, logits_to_keep)

    data = Dataset.from_list([{"prompt": r["prompt"], "privileged_context": r["context"]} for r in spec["train"]])
    args = SDFTConfig(
        output_dir=str(Path(spec["out"]) / "trl-run"), per_device_train_batch_size=spec["G"],
        num_generations=spec["G"], gradient_accumulation_steps=1, max_steps=spec["steps"],
        learning_rate=spec["lr"], weight_decay=0.0, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=spec["warmup_steps"], max_grad_norm=1.0,
        max_completion_length=spec["max_new_tokens"], max_prompt_length=None, temperature=1.0, top_k=0, top_p=1.0,
        distillation_mode="topk_logits", distillation_topk=spec["k"], distillation_add_tail=True,
        distillation_alpha=1.0,  # alpha=1: KL(student || teacher), the reverse KL ours uses
        num_loss_tokens_to_skip=spec["skip_first"], teacher_model_kind="base",
        gradient_checkpointing=spec["trl_gradient_checkpointing"], bf16=False, use_cpu=True,
        logging_steps=1, save_strategy="no", report_to="none", seed=spec["seed"], disable_tqdm=True,
        dataloader_pin_memory=False)
    peft_config = LoraConfig(r=spec["rank"], lora_alpha=2 * spec["rank"], lora_dropout=0.0,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    from transformers import TrainerCallback

    marks = []

    class Marks(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            marks.append((time.perf_counter(), counted["tokens"]))

        def on_step_end(self, *a, **kw):
            marks.append((time.perf_counter(), counted["tokens"]))

    trainer = TimedSDFT(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                        peft_config=peft_config, callbacks=[Marks()])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainer.model.save_pretrained(spec["out"])  # adapter_config.json + weights, for the eval worker
    return {"tokens": counted["tokens"], "seconds": seconds, "wall_incl_setup": seconds, "steps": trainer.state.global_step,
            "losses": losses, "rss_loaded_mb": rss_loaded, "peak_rss_mb": _peak_mb(), "breakdown": timers.t, "marks": marks}


def _progress(step, total, stats):
    print(f"  step {step}/{total} loss {stats['loss']:.4f}", file=sys.stderr, flush=True)


def run_eval(spec):
    """Adherence, gap and drift of base, base + context and each adapter on the probes."""
    import torch

    from learnagent.learning import evaluate, rollout
    from learnagent.learning.losses import topk_reverse_kl
    from learnagent.runtime.loading import load_with_adapters

    torch.set_num_threads(spec["threads"])
    probes = evaluate.load_probes(Path(spec["probes"]))
    adapters = {name: Path(folder) for name, folder in spec["adapters"].items()}
    model, tokenizer = load_with_adapters(spec["model"], adapters)
    n, max_new, seed = spec["eval_samples"], spec["eval_max_new_tokens"], spec["seed"]
    out = {}
    for variant in ["base", "context", *adapters]:
        adapter = variant if variant in adapters else None
        hits, kl_sum, kl_count, started = [], 0.0, 0, time.perf_counter()
        for i, probe in enumerate(probes):
            # the seeds of evaluate.evaluate; one set of samples serves adherence and gap, as there
            x_ids = rollout.encode(tokenizer, probe.prompt, probe.context if variant == "context" else None)
            with rollout.adapter_context(model, adapter), torch.no_grad():
                outs = rollout.sample(model, tokenizer, x_ids, n, max_new, 1.0, seed=seed + i)
                s_logp, mask = rollout.batch_completion_logprobs(model, x_ids, outs) if variant != "context" \
                    else (None, None)
            hits.append([probe.matches(tokenizer.decode(o, skip_special_tokens=True)) for o in outs])
            if variant != "context":
                t_ids = rollout.encode(tokenizer, probe.prompt, probe.context)
                with rollout.adapter_context(model, None), torch.no_grad():
                    t_logp, _ = rollout.batch_completion_logprobs(model, t_ids, outs,
                                                                  rollout.build_prefix_cache(model, t_ids))
                kl = topk_reverse_kl(s_logp, t_logp, 20)
                kl_sum += float(kl[mask].sum())
                kl_count += int(mask.sum())
        drift = rollout.drift(model, tokenizer, rollout.GENERAL_PROMPTS[: spec["drift_prompts"]], adapter=adapter,
                              max_new_tokens=max_new, seed=seed) if adapter else 0.0
        out[variant] = {"adherence": evaluate.adherence(hits), "gap": kl_sum / kl_count if kl_count else 0.0,
                        "drift": drift, "seconds": time.perf_counter() - started,
                        "per_probe": [sum(h) for h in hits]}
        print(f"  eval {variant}: {out[variant]}", file=sys.stderr, flush=True)
    for name in adapters:
        out[name]["internalization"] = {m: evaluate.internalization(out["base"][m], out["context"][m], out[name][m])
                                        for m in ("adherence", "gap")}
    return {"variants": out, "peak_rss_mb": _peak_mb()}


JOBS = {"opsd": run_opsd, "sft": run_sft, "trl": run_trl, "eval": run_eval}

if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = JOBS[spec["job"]](spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=1, default=str))
