import math

import pytest
import torch
import torch.nn.functional as F

from learnagent.learning.losses import (bucketed_kl, clip_per_token, distill_kl, distill_loss, full_reverse_kl,
                                        masked_mean, support_mask, teacher_topk, token_nll, topk_reverse_kl)


def _logp(*rows):
    return torch.log(torch.tensor(rows, dtype=torch.float64))


def test_kl_of_a_distribution_to_itself_is_zero():
    p = torch.randn(5, 30).log_softmax(-1)
    assert torch.allclose(full_reverse_kl(p, p), torch.zeros(5), atol=1e-6)
    assert torch.allclose(topk_reverse_kl(p, p, k=4), torch.zeros(5), atol=1e-6)


def test_full_support_matches_torch_kl_div():
    torch.manual_seed(0)
    s = torch.randn(7, 50).log_softmax(-1)
    t = (torch.randn(7, 50) * 3).log_softmax(-1)
    # F.kl_div(input, target, log_target) computes KL(target || input): reverse KL puts the student as target.
    ref = F.kl_div(t, s, log_target=True, reduction="none").sum(-1)
    assert torch.allclose(full_reverse_kl(s, t), ref, atol=1e-5)
    assert torch.allclose(topk_reverse_kl(s, t, k=50), ref, atol=1e-5)
    assert torch.allclose(topk_reverse_kl(s, t, k=500), ref, atol=1e-5)  # k > V is clamped to V


def test_topk_with_tail_by_hand():
    s = _logp([0.5, 0.3, 0.15, 0.05])
    t = _logp([0.2, 0.4, 0.1, 0.3])
    # k=2: student's top-2 ids are 0 and 1; tails are 0.2 (student) and 0.4 (teacher).
    expected = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / 0.4)
    got = topk_reverse_kl(s, t, k=2)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # and it is a lower bound of the full KL (merging outcomes never increases a KL)
    assert got.item() <= full_reverse_kl(s, t).item() + 1e-9


def test_clip_bounds_value_but_keeps_gradient():
    kl = torch.tensor([0.1, 2.0, 5.0], requires_grad=True)
    clipped = clip_per_token(kl, 1.0)
    assert torch.allclose(clipped, torch.tensor([0.1, 1.0, 1.0]))
    clipped.sum().backward()
    assert torch.allclose(kl.grad, torch.tensor([1.0, 0.5, 0.2]))  # rescaled by max/kl, never zero
    assert clip_per_token(kl, None) is kl and clip_per_token(kl, 0) is kl


def test_masked_mean():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[True, True, False], [False, True, False]])
    assert masked_mean(v, m).item() == pytest.approx((1 + 2 + 5) / 3)
    assert masked_mean(v).item() == pytest.approx(3.5)
    assert masked_mean(v, torch.zeros_like(m)).item() == 0.0


def test_skip_first_and_padding_mask():
    torch.manual_seed(1)
    s = torch.randn(2, 4, 10).log_softmax(-1)
    t = torch.randn(2, 4, 10).log_softmax(-1)
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    loss, per_token = distill_loss(s, t, k=None, skip_first=2, mask=mask)
    full = full_reverse_kl(s, t)
    assert torch.allclose(per_token, full)
    expected = (full[0, 2] + full[0, 3] + full[1, 2]) / 3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # every position skipped: zero loss, no NaN
    loss0, _ = distill_loss(s, t, k=None, skip_first=10, mask=mask)
    assert loss0.item() == 0.0


def test_clip_in_distill_loss():
    s = _logp([0.97, 0.01, 0.01, 0.01]).float()
    t = _logp([0.01, 0.97, 0.01, 0.01]).float()
    loss, per_token = distill_loss(s, t, k=None, clip=0.5)
    assert per_token.item() > 4.0 and loss.item() == pytest.approx(0.5)


def test_gradient_flows_only_to_the_student():
    s_logits = torch.randn(3, 12, requires_grad=True)
    t_logits = torch.randn(3, 12, requires_grad=True)
    loss, _ = distill_loss(s_logits.log_softmax(-1), t_logits.log_softmax(-1), k=5, skip_first=1, clip=10.0)
    loss.backward()
    assert s_logits.grad is not None and s_logits.grad.abs().sum() > 0
    assert t_logits.grad is None
    assert s_logits.grad[0].abs().sum() == 0  # skipped position gets no gradient


def test_descending_the_loss_moves_student_to_teacher():
    torch.manual_seed(2)
    target = torch.randn(1, 16).log_softmax(-1)
    logits = torch.zeros(1, 16, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    losses = []
    for _ in range(200):
        loss, _ = distill_loss(logits.log_softmax(-1), target, k=4)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    # top-k + tail constrains the student's head and its total tail mass, not the tail's shape
    # (and, mode-seeking, it need not find a teacher mode outside the student's top-k)
    assert losses[-1] < 0.1 * losses[0]
    start = full_reverse_kl(torch.zeros(1, 16).log_softmax(-1), target).item()
    assert full_reverse_kl(logits.log_softmax(-1), target).item() < start


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shapes differ"):
        distill_loss(torch.zeros(2, 5), torch.zeros(3, 5))


# ---------------------------------------------------------------- supports and directions

S4 = [0.5, 0.3, 0.15, 0.05]
T4 = [0.2, 0.1, 0.3, 0.4]


def test_teacher_support_forward_kl_by_hand():
    s, t = _logp(S4), _logp(T4)
    # the teacher's top-2 ids are 3 and 2; tails: student 0.8, teacher 0.3. Forward = KL(teacher || student)
    expected = 0.4 * math.log(0.4 / 0.05) + 0.3 * math.log(0.3 / 0.15) + 0.3 * math.log(0.3 / 0.8)
    got = distill_kl(s, t, k=2, support="teacher", forward_weight=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # reverse on the same support: KL(student || teacher)
    expected_rev = 0.05 * math.log(0.05 / 0.4) + 0.15 * math.log(0.15 / 0.3) + 0.8 * math.log(0.8 / 0.3)
    assert distill_kl(s, t, k=2, support="teacher").item() == pytest.approx(expected_rev, abs=1e-6)


def test_union_support_and_mixture_by_hand():
    s, t = _logp(S4), _logp(T4)
    # student top-1 = id 0, teacher top-1 = id 3: support {0, 3}; tails: student 0.45, teacher 0.4
    mask = support_mask(s, t, "both", 1)
    assert mask.tolist() == [[True, False, False, True]]
    rev = 0.5 * math.log(0.5 / 0.2) + 0.05 * math.log(0.05 / 0.4) + 0.45 * math.log(0.45 / 0.4)
    fwd = 0.2 * math.log(0.2 / 0.5) + 0.4 * math.log(0.4 / 0.05) + 0.4 * math.log(0.4 / 0.45)
    assert bucketed_kl(s, t, mask).item() == pytest.approx(rev, abs=1e-6)
    assert bucketed_kl(t, s, mask).item() == pytest.approx(fwd, abs=1e-6)
    got = distill_kl(s, t, k=1, support="both", forward_weight=0.25)
    assert got.item() == pytest.approx(0.75 * rev + 0.25 * fwd, abs=1e-6)


def test_student_support_matches_the_gathered_topk():
    torch.manual_seed(3)
    s = torch.randn(2, 5, 40).log_softmax(-1)
    t = (torch.randn(2, 5, 40) * 2).log_softmax(-1)
    mask = support_mask(s, t, "student", 6)
    assert torch.allclose(bucketed_kl(s, t, mask), topk_reverse_kl(s, t, 6), atol=1e-5)
    # a full support is the exact KL in both directions, whatever k says
    everything = torch.ones_like(mask)
    assert torch.allclose(bucketed_kl(s, t, everything), full_reverse_kl(s, t), atol=1e-5)
    assert torch.allclose(distill_kl(s, t, k=None, forward_weight=1.0), full_reverse_kl(t, s), atol=1e-5)


def test_forward_kl_on_teacher_support_finds_a_mode_the_student_misses():
    """The case that motivates the teacher's support: the teacher's favourite token sits outside
    the student's top-k. Descending the forward KL on the teacher's top-k raises it to the top."""
    target = torch.full((1, 16), -8.0)
    target[0, 11] = 0.0  # the teacher's mode
    target = target.log_softmax(-1)
    init = torch.zeros(1, 16)
    init[0, :4] = 3.0  # the student is sure of ids 0-3
    logits = init.clone().requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(100):
        loss, _ = distill_loss(logits.log_softmax(-1), target, k=4, support="teacher", forward_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logits.argmax().item() == 11


def test_bad_support_or_weight_is_an_error():
    s = torch.zeros(1, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="support"):
        distill_kl(s, s, k=2, support="nobody", forward_weight=0.5)
    with pytest.raises(ValueError, match="forward_weight"):
        distill_kl(s, s, k=2, forward_weight=1.5)


def test_kept_teacher_topk_gives_the_same_loss_and_gradient():
    torch.manual_seed(4)
    logits = torch.randn(2, 6, 50, requires_grad=True)
    t = (torch.randn(2, 6, 50) * 2).log_softmax(-1)
    mask = support_mask(logits.log_softmax(-1), t, "teacher", 5)
    for w in (0.0, 0.5, 1.0):
        by_mask = (1 - w) * bucketed_kl(logits.log_softmax(-1), t, mask) + w * bucketed_kl(t, logits.log_softmax(-1), mask)
        full, _ = distill_loss(logits.log_softmax(-1), t, k=5, support="teacher", forward_weight=w)
        kept, _ = distill_loss(logits.log_softmax(-1), teacher_topk(t, 5), forward_weight=w)
        assert torch.allclose(full, by_mask.mean(), atol=1e-5) and torch.allclose(kept, full, atol=1e-6)
        g_full = torch.autograd.grad(full, logits)[0]
        g_kept = torch.autograd.grad(kept, logits)[0]
        assert torch.allclose(g_full, g_kept, atol=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        distill_loss(logits.log_softmax(-1)[:1], teacher_topk(t, 5))


def test_token_nll_by_hand():
    logp = _logp([0.5, 0.3, 0.2], [0.1, 0.6, 0.3])
    assert token_nll(logp, torch.tensor([0, 2])).tolist() == pytest.approx([-math.log(0.5), -math.log(0.3)])
