"""Self-distillation of repository experience into a LoRA: the student (no context) learns to
write what the teacher (the same model reading the experience c) writes.

One training micro-step, for one pair (x, c, real continuation):

1. the student (base + "student" LoRA) reads x once, with grad;
2. the completions y: by default (`targets="data"`) the real continuation (a cut of a
   repository file, or the accepted diff); or G samples of the student from its pass over x
   (on-policy, the reference design's OPSD: `train_common.ON_POLICY`); or G samples of the
   teacher reading c (context distillation), filtered by the repository's checks;
3. the teacher (base + frozen "teacher" = the previous adapter, or the bare base on the
   first night) reads c then x ONCE and scores every y from that cache, no grad; the student
   scores y from its pass over x, with grad;
4. loss = per-token KL on a top-k support (default: forward KL(teacher || student) on the
   teacher's top-k), mixed with the NLL of the real text (`data_weight`), + lambda_ret *
   KL(student || previous) on a replay prompt x' without context.

Why these defaults: docs/OPSD.md "Learning that sticks" (measured on held-out behaviour).
`run_training` (train_common.py) wraps micro-steps into AdamW steps with gradient
accumulation, cosine schedule, clipping, checkpoints and the progress bar.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Callable, Sequence

from learnagent.core.errors import LearnagentError
from learnagent.learning.losses import distill_loss, masked_mean, teacher_topk, token_nll
from learnagent.learning.rollout import (adapter_context, at_token_boundary, batch_completion_logprobs,
                                         build_prefix_cache, encode, encode_prefix, sample)
from learnagent.learning.sft import target_ids
from learnagent.learning.train_common import (STUDENT, TEACHER, TrainConfig, TrainResult, data_order,
                                              items_per_step, load_student, run_training)

__all__ = ["TrainConfig", "TrainResult", "train_opsd", "data_order"]


def _sample_seed(config: TrainConfig, step: int, micro: int, salt: int = 0) -> int:
    return (config.seed * 7_919 + step * 104_729 + micro * 31 + salt) % (2**31 - 1)


TARGETS = ("student", "teacher", "data")


def _completions(model, tokenizer, pair, x_ids, s_prefix, teacher_prefix: Callable, *, config: TrainConfig,
                 teacher: str | None, seed: int, accept: Callable | None) -> list:
    """The completions y the loss is read on (config.targets):
    student: G samples of the student reading x (on-policy, the prefix is its own pass over x);
    teacher: G samples of the teacher reading c then x (context distillation), minus those
             `accept(pair, text)` refuses (the repository's own checks); the student's if none is left;
    data:    the pair's real continuation (pair.target), teacher-forced."""
    import torch

    if config.targets == "data":
        return [target_ids(tokenizer, pair.target, text=isinstance(pair.prompt, str))]
    if config.targets == "teacher":
        with adapter_context(model, teacher), torch.no_grad():
            ys = sample(model, tokenizer, x_ids, config.samples_per_prompt, config.max_new_tokens,
                        config.temperature, seed=seed, prefix=teacher_prefix())
        if accept is not None:
            ys = [y for y in ys if accept(pair, tokenizer.decode(y, skip_special_tokens=True))]
        if ys:
            return ys
    with adapter_context(model, STUDENT):
        return sample(model, tokenizer, x_ids, config.samples_per_prompt, config.max_new_tokens,
                      config.temperature, seed=seed, prefix=s_prefix)


def _retention(model, tokenizer, replay_prompt, *, teacher: str | None, config: TrainConfig, seed: int,
               kept_anchor: dict | None):
    """KL of the student to the anchor (the previous adapter, or the base) on a replay prompt x',
    and the tokens it read. config.retention "student": on a fresh on-policy sample of the student
    (reverse KL on its top-k); "anchor": on the anchor's own continuation of x', drawn once per run
    with its top-k (`kept_anchor`), forward KL on that support: no sampling after the first epoch."""
    import torch

    r_ids = encode(tokenizer, replay_prompt)
    if config.retention == "anchor":
        key = repr(replay_prompt)
        if key not in kept_anchor:  # seeded by the prompt, not the step: a resumed run draws the same
            with adapter_context(model, teacher), torch.no_grad():
                y = sample(model, tokenizer, r_ids, 1, config.max_new_tokens, config.temperature,
                           seed=config.seed + zlib.crc32(key.encode()))
                a_logp, _ = batch_completion_logprobs(model, r_ids, y)
            kept_anchor[key] = (y, teacher_topk(a_logp, config.k))
        y, anchor = kept_anchor[key]
        with adapter_context(model, STUDENT):
            r_logp, r_mask = batch_completion_logprobs(model, r_ids, y)
        ret_loss, _ = distill_loss(r_logp, anchor, mask=r_mask, forward_weight=1.0)
        return ret_loss, int(r_mask.sum())
    with adapter_context(model, STUDENT):  # one graded pass over x', as in step 1
        r_prefix = encode_prefix(model, r_ids)
        r_comp = sample(model, tokenizer, r_ids, 1, config.max_new_tokens, config.temperature, seed=seed,
                        prefix=r_prefix)
    with adapter_context(model, teacher), torch.no_grad():
        p_logp, _ = batch_completion_logprobs(model, r_ids, r_comp)
    with adapter_context(model, STUDENT):
        r_logp, r_mask = batch_completion_logprobs(model, r_ids, r_comp, r_prefix, consume=True)
    ret_loss, _ = distill_loss(r_logp, p_logp, k=config.k, mask=r_mask)
    return ret_loss, int(r_mask.sum())


def opsd_micro_step(model, tokenizer, pair, replay_prompt, *, teacher: str | None, config: TrainConfig,
                    seed: int, accept: Callable | None = None, kept_teacher: dict | None = None,
                    kept_anchor: dict | None = None):
    """Loss (with grad, on the student) and stats for one pair and optional replay prompt.

    `kept_teacher` (a dict owned by the caller) keeps the teacher's top-k of real continuations
    (targets "data", teacher's support): the teacher is frozen and y is fixed, so later epochs
    skip the teacher's pass over c + x + y."""
    import torch

    prompt, target = at_token_boundary(pair.prompt, pair.target)
    pair = dataclasses.replace(pair, prompt=prompt, target=target)
    x_ids = encode(tokenizer, pair.prompt)
    t_ids = encode(tokenizer, pair.prompt, pair.context)
    t_prefix = []

    def teacher_prefix():  # the teacher reads c + x once, no grad, only when it is needed
        if not t_prefix:
            with adapter_context(model, teacher), torch.no_grad():
                t_prefix.append(build_prefix_cache(model, t_ids))
        return t_prefix[0]

    # 1. the student reads x once, with grad: its pass seeds on-policy sampling and scores y in
    #    step 3 (the weights do not change within a step: the gradient is that of a second pass)
    with adapter_context(model, STUDENT):
        s_prefix = encode_prefix(model, x_ids)

    # 2. the completions y: on-policy samples, the teacher's samples, or the real continuation
    completions = _completions(model, tokenizer, pair, x_ids, s_prefix, teacher_prefix, config=config,
                               teacher=teacher, seed=seed, accept=accept)

    # 3. the teacher scores y after c + x (one prefix for all G), or its kept top-k is reused;
    #    the student scores y after x alone
    key = (pair.episode_id, repr(pair.prompt)) if kept_teacher is not None else None
    t_scores = kept_teacher.get(key) if key is not None else None
    if t_scores is None:
        with adapter_context(model, teacher), torch.no_grad():
            t_scores, _ = batch_completion_logprobs(model, t_ids, completions, teacher_prefix(), consume=True)
        if key is not None:
            t_scores = teacher_topk(t_scores, config.k)
            kept_teacher[key] = t_scores
    with adapter_context(model, STUDENT):
        s_logp, mask = batch_completion_logprobs(model, x_ids, completions, s_prefix, consume=True)
    loss, per_token = distill_loss(s_logp, t_scores, k=config.k, skip_first=config.skip_first,
                                   clip=config.kl_clip, mask=mask, support=config.support,
                                   forward_weight=config.forward_weight)
    if config.targets == "data" and config.data_weight > 0:  # the real text itself, where the teacher falls short
        nll = masked_mean(token_nll(s_logp, completions[0].to(s_logp.device)[None]), mask)
        loss = (1.0 - config.data_weight) * loss + config.data_weight * nll
    kept = mask.clone()
    kept[:, : config.skip_first] = False
    kl = float(per_token[kept].mean()) if kept.any() else 0.0
    tokens = int(mask.sum())
    del t_scores, t_prefix

    # 4. retention on a replay prompt, no context: stay close to the previous adapter (or base)
    ret = 0.0
    if replay_prompt is not None and config.lambda_ret > 0:
        ret_loss, r_tokens = _retention(model, tokenizer, replay_prompt, teacher=teacher, config=config,
                                        seed=seed + 1, kept_anchor=kept_anchor)
        loss = loss + config.lambda_ret * ret_loss
        ret = float(ret_loss.detach())
        tokens += r_tokens
    return loss, {"kl": kl, "retention": ret, "tokens": tokens}


def train_opsd(model_path, pairs: Sequence, replay: Sequence | None = None, *, prev_adapter: Path | None,
               out_dir: Path, config: TrainConfig | None = None, progress: Callable | None = None,
               should_stop: Callable[[], bool] | None = None,
               accept: Callable[[object, str], bool] | None = None) -> TrainResult:
    """Train the repository LoRA on `pairs` by OPSD and save it into `out_dir`.

    The student starts from `prev_adapter` (which is also the frozen teacher and the
    retention anchor) or from a fresh LoRA (teacher and anchor: the bare base). A
    checkpoint in `out_dir/checkpoint` from an interrupted run is resumed. `accept(pair, text)`
    refuses teacher samples (config.targets == "teacher") that the repository's checks would refuse.
    """
    config = config or TrainConfig()
    if config.targets not in TARGETS:
        raise LearnagentError(f"targets must be one of {', '.join(TARGETS)}, got {config.targets!r}")
    pairs = list(pairs)
    if config.targets == "data":
        pairs = [p for p in pairs if p.target]
    replay = list(replay or [])
    if not pairs:
        raise LearnagentError("no training pairs: nothing to learn from yet")
    model, tokenizer = load_student(model_path, prev_adapter, config, with_teacher=True)
    teacher = TEACHER if prev_adapter is not None else None
    # real continuations read on the teacher's support: its top-k is the same every epoch, keep it
    kept_teacher = {} if config.targets == "data" and config.support == "teacher" and config.k else None
    kept_anchor = {} if config.retention == "anchor" else None
    if config.retention not in ("student", "anchor"):
        raise LearnagentError(f"retention must be student or anchor, got {config.retention!r}")

    def micro_step(step: int, micro: int):
        pair = pairs[data_order(len(pairs), step, micro, items_per_step(config), config.seed)]
        replay_prompt = replay[data_order(len(replay), step, micro, items_per_step(config), config.seed + 1)] \
            if replay else None
        return opsd_micro_step(model, tokenizer, pair, replay_prompt, teacher=teacher, config=config,
                               seed=_sample_seed(config, step, micro), accept=accept, kept_teacher=kept_teacher,
                               kept_anchor=kept_anchor)

    return run_training("opsd", model, config, out_dir, micro_step, progress=progress, should_stop=should_stop)
