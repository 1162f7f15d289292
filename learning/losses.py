"""Distillation losses: pure functions over log-probability tensors.

All functions take log-probabilities over the vocabulary in the last dimension
(`[..., V]`, e.g. `[L, V]` for one completion or `[B, L, V]` for a padded batch) and
work in float32 whatever the model's dtype, because KL terms are small differences of
large numbers.

The objective is a KL between the student and the teacher at every completion position.
Computing it over the whole vocabulary is cheap for a 135M model but wasteful: almost all
the mass sits on a few tokens. Following SDPO/SDFT practice we read both distributions on a
SUPPORT of a few token ids and lump everything else of each into one "tail" bucket, which
keeps the result a proper KL between two distributions over |support|+1 outcomes (exact when
the support is the whole vocabulary). The support is the student's top-k (mode seeking: a
teacher mode outside it shows only through the tail), the teacher's top-k (the SDFT recipe:
the student is pulled towards what the teacher would write) or their union. The direction is
reverse KL(student || teacher), forward KL(teacher || student), or a mixture of the two.
"""

from __future__ import annotations

from typing import NamedTuple

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


SUPPORTS = ("student", "teacher", "both")


class TeacherTopK(NamedTuple):
    """The teacher's k most likely ids at each position and their log-probs: all that a KL on the
    teacher's support reads, so it can be kept (a few KB) instead of [..., V] log-probs."""

    ids: torch.Tensor  # [..., k] long
    logp: torch.Tensor  # [..., k] float32

    def to(self, device) -> "TeacherTopK":
        return TeacherTopK(self.ids.to(device), self.logp.to(device))


def teacher_topk(teacher_logp: torch.Tensor, k: int) -> TeacherTopK:
    top = teacher_logp.detach().float().topk(min(int(k), teacher_logp.shape[-1]), dim=-1)
    return TeacherTopK(top.indices, top.values)


def teacher_support_kl(student_logp: torch.Tensor, teacher: TeacherTopK, forward_weight: float = 1.0) -> torch.Tensor:
    """KL on the teacher's top-k + one tail bucket, from the teacher's kept top-k: [..., V] -> [...].

    forward_weight w: (1 - w) * KL(student || teacher) + w * KL(teacher || student) on that support."""
    s_k = student_logp.float().gather(-1, teacher.ids)
    t_k = teacher.logp.float()
    s_all = torch.cat([s_k, _log_tail(s_k)], dim=-1)
    t_all = torch.cat([t_k, _log_tail(t_k)], dim=-1)
    forward = (t_all.exp() * (t_all - s_all)).sum(-1)
    if forward_weight == 1.0:
        return forward
    reverse = (s_all.exp() * (s_all - t_all)).sum(-1)
    return (1.0 - forward_weight) * reverse + forward_weight * forward


def support_mask(student_logp: torch.Tensor, teacher_logp: torch.Tensor, support: str, k: int) -> torch.Tensor:
    """Bool [..., V]: the token ids a bucketed KL reads: the student's top-k, the teacher's, or both."""
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    k = min(int(k), student_logp.shape[-1])
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    mask = torch.zeros(student_logp.shape, dtype=torch.bool, device=student_logp.device)
    if support in ("student", "both"):
        mask.scatter_(-1, student_logp.topk(k, dim=-1).indices, True)
    if support in ("teacher", "both"):
        mask.scatter_(-1, teacher_logp.topk(k, dim=-1).indices, True)
    return mask


def bucketed_kl(p_logp: torch.Tensor, q_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the ids where `mask` is true plus one tail bucket for the rest: [..., V] -> [...]."""
    p, q = p_logp.float(), q_logp.float()
    inside = (mask * p.exp() * (p - q).masked_fill(~mask, 0.0)).sum(-1)
    neg = torch.finfo(p.dtype).min
    p_tail = _log_tail(p.masked_fill(~mask, neg))
    q_tail = _log_tail(q.masked_fill(~mask, neg))
    return inside + (p_tail.exp() * (p_tail - q_tail)).squeeze(-1)


def distill_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor, *, k: int | None = 20,
               support: str = "student", forward_weight: float = 0.0) -> torch.Tensor:
    """Per-position KL of the student to the teacher: [..., V] -> [...].

    forward_weight w mixes the directions: (1 - w) * KL(student || teacher) + w * KL(teacher || student).
    k None (or >= V): the exact full-vocabulary KL, whatever the support.
    """
    if not 0.0 <= forward_weight <= 1.0:
        raise ValueError(f"forward_weight must be in [0, 1], got {forward_weight}")
    full = k is None or k >= student_logp.shape[-1]
    if full:
        reverse = lambda: full_reverse_kl(student_logp, teacher_logp)  # noqa: E731
        forward = lambda: full_reverse_kl(teacher_logp, student_logp)  # noqa: E731
    elif support == "student" and forward_weight == 0.0:
        return topk_reverse_kl(student_logp, teacher_logp, k)  # the common case, without a [.., V] mask
    elif support == "teacher":
        return teacher_support_kl(student_logp, teacher_topk(teacher_logp, k), forward_weight)
    else:
        mask = support_mask(student_logp.detach(), teacher_logp.detach(), support, k)
        reverse = lambda: bucketed_kl(student_logp, teacher_logp, mask)  # noqa: E731
        forward = lambda: bucketed_kl(teacher_logp, student_logp, mask)  # noqa: E731
    if forward_weight == 0.0:
        return reverse()
    if forward_weight == 1.0:
        return forward()
    return (1.0 - forward_weight) * reverse() + forward_weight * forward()


def token_nll(student_logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the given ids per position: [..., V], [...] -> [...]."""
    return -student_logp.float().gather(-1, ids.unsqueeze(-1)).squeeze(-1)


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


def distill_loss(student_logp: torch.Tensor, teacher_logp: torch.Tensor | TeacherTopK, *, k: int | None = 20,
                 skip_first: int = 0, clip: float | None = None, mask: torch.Tensor | None = None,
                 support: str = "student", forward_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sequence distillation loss and the raw per-token KL.

    student_logp, teacher_logp: [L, V] or [B, L, V]; the teacher is detached here, so the
    gradient reaches the student only. mask: [L] or [B, L], true on real completion
    tokens (False on padding). The first `skip_first` positions of each completion are
    left out (opening tokens are mostly format, and the teacher's context shifts them most).
    k: None or >= V uses the exact full-vocabulary KL; `support` and `forward_weight` as in
    `distill_kl` (default: reverse KL on the student's top-k). A `TeacherTopK` teacher (kept from
    an earlier pass) means the teacher's support, whatever `support` says.

    Returns (loss, per_token): loss is the masked mean of the clipped per-token KL (0 with
    a graph when no token is left); per_token is the unclipped KL, detached, for logging.
    """
    t_shape = teacher_logp.ids.shape[:-1] if isinstance(teacher_logp, TeacherTopK) else teacher_logp.shape
    s_shape = student_logp.shape[:-1] if isinstance(teacher_logp, TeacherTopK) else student_logp.shape
    if s_shape != t_shape:
        raise ValueError(f"student and teacher shapes differ: {tuple(s_shape)} vs {tuple(t_shape)}")
    if isinstance(teacher_logp, TeacherTopK):
        per_token = teacher_support_kl(student_logp, teacher_logp, forward_weight)
    else:
        per_token = distill_kl(student_logp, teacher_logp.detach(), k=k, support=support,
                               forward_weight=forward_weight)
    keep = torch.ones_like(per_token, dtype=torch.bool) if mask is None else mask.to(torch.bool).clone()
    if skip_first > 0:
        keep[..., :skip_first] = False
    loss = masked_mean(clip_per_token(per_token, clip), keep)
    return loss, per_token.detach()
