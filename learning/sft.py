"""The SFT baseline (`learnagent sleep --method sft`): fit the LoRA to x -> accepted diff.

Off-policy and context-free: the student imitates the final diff token by token. Kept
runnable to compare against OPSD on the same pairs; it shares the optimizer, schedule,
checkpoints and progress of train_common.run_training. In the TrainResult, `kls` holds
each step's mean per-token negative log-likelihood (there is no teacher to diverge from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from learnagent.core.errors import LearnagentError
from learnagent.learning.rollout import adapter_context, at_token_boundary, batch_completion_logprobs, encode
from learnagent.learning.train_common import (STUDENT, TrainConfig, TrainResult, data_order, items_per_step,
                                              load_student, run_training)

MAX_TARGET_TOKENS = 512  # a diff longer than this is cut (the head carries the change's shape)


def target_ids(tokenizer, target: str, max_tokens: int = MAX_TARGET_TOKENS, *, text: bool = False):
    """The answer as ids: a chat answer is closed by the end-of-turn token as the chat template
    does; a raw-text continuation (`text`, a cut of a file) is not, the file goes on."""
    import torch

    if text:
        return torch.tensor(tokenizer(target, add_special_tokens=False)["input_ids"][:max_tokens], dtype=torch.long)
    ids = tokenizer(target, add_special_tokens=False)["input_ids"][: max_tokens - 1]
    return torch.tensor(ids + [tokenizer.eos_token_id], dtype=torch.long)


def sft_micro_step(model, tokenizer, pair, max_target_tokens: int = MAX_TARGET_TOKENS):
    prompt, target = at_token_boundary(pair.prompt, pair.target)
    x_ids = encode(tokenizer, prompt)
    y = target_ids(tokenizer, target, max_target_tokens, text=isinstance(prompt, str))
    with adapter_context(model, STUDENT):
        logp, _ = batch_completion_logprobs(model, x_ids, [y])
    nll = -logp[0].gather(-1, y.to(logp.device).unsqueeze(-1)).squeeze(-1)
    loss = nll.mean()
    return loss, {"kl": float(loss.detach()), "tokens": len(y)}


def train_sft(model_path, pairs: Sequence, replay: Sequence | None = None, *, prev_adapter: Path | None,
              out_dir: Path, config: TrainConfig | None = None, progress: Callable | None = None,
              should_stop: Callable[[], bool] | None = None, max_target_tokens: int = MAX_TARGET_TOKENS) -> TrainResult:
    """Supervised fine-tuning of the LoRA on (x -> accepted diff); pairs without a target are skipped.

    Same call shape as `train_opsd`; `replay` is accepted and ignored (SFT has no retention term).
    """
    config = config or TrainConfig()
    pairs = [p for p in pairs if p.target]
    if not pairs:
        raise LearnagentError("no training pairs with an accepted diff: nothing for SFT to learn")
    model, tokenizer = load_student(model_path, prev_adapter, config, with_teacher=False)

    def micro_step(step: int, micro: int):
        pair = pairs[data_order(len(pairs), step, micro, items_per_step(config), config.seed)]
        return sft_micro_step(model, tokenizer, pair, max_target_tokens)

    return run_training("sft", model, config, out_dir, micro_step, progress=progress, should_stop=should_stop)
