"""On-policy self-distillation (OPSD) of repository experience into a LoRA.

One training micro-step, for one episode pair (x, c):

1. the student (base + "student" LoRA) reads x once, with grad, and samples G completions
   y of x from (a detached copy of) that KV cache;
2. the teacher (base + frozen "teacher" = the previous adapter, or the bare base on the
   first night) reads c then x ONCE into a KV cache, and scores every y from it, no grad;
3. the student scores the same y from its pass over x (step 1), with grad;
4. loss = per-token top-k reverse KL(student || teacher), skipping the first tokens and
   clipping each token's KL, + lambda_ret * KL(student || previous) on a replay prompt
   x' without context (the retention term keeps what earlier nights learned).

`run_training` (train_common.py) wraps micro-steps into AdamW steps with gradient
accumulation, cosine schedule, clipping, checkpoints and the progress bar.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

from learnagent.core.errors import LearnagentError
from learnagent.learning.losses import distill_loss
from learnagent.learning.rollout import (adapter_context, batch_completion_logprobs, build_prefix_cache, encode,
                                         encode_prefix, sample)
from learnagent.learning.train_common import (STUDENT, TEACHER, TrainConfig, TrainResult, load_student,
                                              run_training)

__all__ = ["TrainConfig", "TrainResult", "train_opsd", "data_order"]


def data_order(n: int, step: int, micro: int, grad_accum: int, seed: int) -> int:
    """Index of the item used at (step, micro): a fresh seeded permutation every epoch.

    A pure function of its arguments, so a resumed run sees exactly the same data.
    """
    position = step * grad_accum + micro
    epoch, offset = divmod(position, n)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[offset]


def _sample_seed(config: TrainConfig, step: int, micro: int, salt: int = 0) -> int:
    return (config.seed * 7_919 + step * 104_729 + micro * 31 + salt) % (2**31 - 1)


def opsd_micro_step(model, tokenizer, pair, replay_prompt, *, teacher: str | None, config: TrainConfig,
                    seed: int):
    """Loss (with grad, on the student) and stats for one pair and optional replay prompt."""
    import torch

    x_ids = encode(tokenizer, pair.prompt)
    t_ids = encode(tokenizer, pair.prompt, pair.context)

    # 1. on-policy samples from the student. Its pass over x is made once, with grad: a
    #    detached copy of that KV cache seeds the sampler, and step 3 scores the samples from
    #    the pass itself (the weights do not change within a step, so the gradient is the
    #    same as from a second pass)
    with adapter_context(model, STUDENT):
        s_prefix = encode_prefix(model, x_ids)
        completions = sample(model, tokenizer, x_ids, config.samples_per_prompt, config.max_new_tokens,
                             config.temperature, seed=seed, prefix=s_prefix)

    # 2. the teacher: its c+x prefix is encoded once, shared by all G samples
    with adapter_context(model, teacher), torch.no_grad():
        prefix = build_prefix_cache(model, t_ids)
        t_logp, _ = batch_completion_logprobs(model, t_ids, completions, prefix, consume=True)  # used once

    # 3. the student on x alone, with grad
    with adapter_context(model, STUDENT):
        s_logp, mask = batch_completion_logprobs(model, x_ids, completions, s_prefix, consume=True)
    loss, per_token = distill_loss(s_logp, t_logp, k=config.k, skip_first=config.skip_first,
                                   clip=config.kl_clip, mask=mask)
    kept = mask.clone()
    kept[:, : config.skip_first] = False
    kl = float(per_token[kept].mean()) if kept.any() else 0.0
    tokens = int(mask.sum())
    del t_logp, prefix

    # 4. retention on a replay prompt, no context: stay close to the previous adapter (or base)
    ret = 0.0
    if replay_prompt is not None and config.lambda_ret > 0:
        r_ids = encode(tokenizer, replay_prompt)
        with adapter_context(model, STUDENT):  # one graded pass over x', as in step 1
            r_prefix = encode_prefix(model, r_ids)
            r_comp = sample(model, tokenizer, r_ids, 1, config.max_new_tokens, config.temperature, seed=seed + 1,
                            prefix=r_prefix)
        with adapter_context(model, teacher), torch.no_grad():
            p_logp, _ = batch_completion_logprobs(model, r_ids, r_comp)
        with adapter_context(model, STUDENT):
            r_logp, r_mask = batch_completion_logprobs(model, r_ids, r_comp, r_prefix, consume=True)
        ret_loss, _ = distill_loss(r_logp, p_logp, k=config.k, mask=r_mask)
        loss = loss + config.lambda_ret * ret_loss
        ret = float(ret_loss.detach())
        tokens += int(r_mask.sum())
    return loss, {"kl": kl, "retention": ret, "tokens": tokens}


def train_opsd(model_path, pairs: Sequence, replay: Sequence | None = None, *, prev_adapter: Path | None,
               out_dir: Path, config: TrainConfig | None = None, progress: Callable | None = None,
               should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train the repository LoRA on `pairs` by OPSD and save it into `out_dir`.

    The student starts from `prev_adapter` (which is also the frozen teacher and the
    retention anchor) or from a fresh LoRA (teacher and anchor: the bare base). A
    checkpoint in `out_dir/checkpoint` from an interrupted run is resumed.
    """
    config = config or TrainConfig()
    pairs = list(pairs)
    replay = list(replay or [])
    if not pairs:
        raise LearnagentError("no training pairs: nothing to learn from yet")
    model, tokenizer = load_student(model_path, prev_adapter, config, with_teacher=True)
    teacher = TEACHER if prev_adapter is not None else None

    def micro_step(step: int, micro: int):
        pair = pairs[data_order(len(pairs), step, micro, config.grad_accum, config.seed)]
        replay_prompt = replay[data_order(len(replay), step, micro, config.grad_accum, config.seed + 1)] \
            if replay else None
        return opsd_micro_step(model, tokenizer, pair, replay_prompt, teacher=teacher, config=config,
                               seed=_sample_seed(config, step, micro))

    return run_training("opsd", model, config, out_dir, micro_step, progress=progress, should_stop=should_stop)
