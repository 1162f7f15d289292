"""Distillation losses: pure functions over log-probability tensors.

All functions take log-probabilities over the vocabulary in the last dimension
(`[..., V]`, e.g. `[L, V]` for one completion or `[B, L, V]` for a padded batch) and
work in float32 whatever the model's dtype, because KL terms are small differences of
large numbers.

The objective is the reverse KL of the student to the teacher on the student's own
samples (on-policy distillation). Computing it over the whole vocabulary is cheap for a
135M model but wasteful: almost all the student's mass sits on a few tokens. Following
SDPO/SDFT practice we take the student's top-k tokens and lump everything else of each
distribution into one "tail" bucket, which keeps the result a proper KL between two
distributions over k+1 outcomes (and makes it exact when k = V).
"""

from __future__ import annotations

import torch

# logsumexp of a full distribution can round to a hair above 0 in float32; clamping just
# below 0 keeps log(1 - mass) finite. A tail of ~1e-7 contributes ~1e-6 nats at most.
_MAX_LOG_MASS = -1e-7


def _log_tail(topk_logp: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(topk_logp))) over the last dim, kept finite; shape [..., 1]."""
    log_mass = torch.logsumexp(topk_logp, dim=-1, keepdim=True).clamp(max=_MAX_LOG_MASS)
    return torch.log(-torch.expm1(log_mass))


def full_reverse_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher) per position over the full vocabulary: [..., V] -> [...]."""
    s, t = student_logp.float(), teacher_logp.float()
    return (s.exp() * (s - t)).sum(-1)


def topk_reverse_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor, k: int = 20) -> torch.Tensor:
    """KL(student || teacher) on the student's top-k tokens plus one tail bucket: [..., V] -> [...].

    Both distributions are read at the same k token ids (the student's most likely ones);
    the rest of each distribution's mass becomes bucket k+1. With k >= V this is the full KL.
    """
    s, t = student_logp.float(), teacher_logp.float()
    k = min(int(k), s.shape[-1])
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    idx = s.topk(k, dim=-1).indices
    s_k, t_k = s.gather(-1, idx), t.gather(-1, idx)
    s_all = torch.cat([s_k, _log_tail(s_k)], dim=-1)
    t_all = torch.cat([t_k, _log_tail(t_k)], dim=-1)
    return (s_all.exp() * (s_all - t_all)).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is true (all of them without a mask); 0 when nothing is kept."""
    if mask is None:
        return values.mean() if values.numel() else values.sum()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def clip_per_token(kl: torch.Tensor, max_kl: float | None) -> torch.Tensor:
    """Bound each token's KL at `max_kl` (None or <= 0: no clipping).

    The value equals min(kl, max_kl), but unlike a hard clamp the gradient is rescaled
    (by max_kl / kl) instead of zeroed: a token where the teacher disagrees strongly is
    usually exactly what the context teaches, so it should still pull, just not dominate
    the sequence (OPSD's observation that a few style tokens carry most of the KL).
    """
    if not max_kl or max_kl <= 0:
        return kl
    scale = (max_kl / kl.detach().clamp_min(1e-12)).clamp(max=1.0)
    return kl * scale


def distill_loss(student_logp: torch.Tensor, teacher_logp: torch.Tensor, *, k: int | None = 20,
                 skip_first: int = 0, clip: float | None = None,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sequence distillation loss and the raw per-token KL.

    student_logp, teacher_logp: [L, V] or [B, L, V]; the teacher is detached here, so the
    gradient reaches the student only. mask: [L] or [B, L], true on real completion
    tokens (False on padding). The first `skip_first` positions of each completion are
    left out (opening tokens are mostly format, and the teacher's context shifts them most).
    k: None or >= V uses the exact full-vocabulary KL.

    Returns (loss, per_token): loss is the masked mean of the clipped per-token KL (0 with
    a graph when no token is left); per_token is the unclipped KL, detached, for logging.
    """
    if student_logp.shape != teacher_logp.shape:
        raise ValueError(f"student and teacher shapes differ: {tuple(student_logp.shape)} vs "
                         f"{tuple(teacher_logp.shape)}")
    teacher_logp = teacher_logp.detach()
    if k is None or k >= student_logp.shape[-1]:
        per_token = full_reverse_kl(student_logp, teacher_logp)
    else:
        per_token = topk_reverse_kl(student_logp, teacher_logp, k)
    keep = torch.ones_like(per_token, dtype=torch.bool) if mask is None else mask.to(torch.bool).clone()
    if skip_first > 0:
        keep[..., :skip_first] = False
    loss = masked_mean(clip_per_token(per_token, clip), keep)
    return loss, per_token.detach()
