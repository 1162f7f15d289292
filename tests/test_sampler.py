"""The shared-prefix sampler (learning/rollout.sample) on the tiny in-process model:
it draws from the model's own distribution, runs the prompt once for all rows, matches
HF `generate` when greedy, and stops once every row has ended its turn."""

import pytest
import torch

from learnagent.learning.rollout import encode, sample
from tiny_model import make_tiny_model

PROMPT = [{"role": "user", "content": "Task: write def add(a, b)"}]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    model, tok = make_tiny_model(seed=3)
    return model.eval(), tok


def _forward_shapes(model):
    """Record the input_ids shape of every forward call of `model`."""
    shapes = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                             with_kwargs=True)
    return shapes, handle


def test_prompt_runs_once_then_one_token_per_row(tiny):
    model, tok = tiny
    x = encode(tok, PROMPT)
    shapes, handle = _forward_shapes(model)
    try:
        comps = sample(model, tok, x, 5, 6, seed=0)
    finally:
        handle.remove()
    assert shapes[0] == (1, x.shape[1])  # one prefill, not 5
    assert all(s == (5, 1) for s in shapes[1:])
    steps = max(len(c) for c in comps)
    assert len(shapes) == steps  # the last token drawn needs no forward
    assert len(comps) == 5 and all(1 <= len(c) <= 6 for c in comps)


def test_greedy_equals_hf_generate(tiny):
    model, tok = tiny
    x = encode(tok, PROMPT)
    ours = sample(model, tok, x, 2, 12, temperature=0)
    with torch.no_grad():
        ref = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[0, x.shape[1]:]
    ends = (ref == tok.eos_token_id).nonzero()
    ref = ref[: int(ends[0]) + 1] if len(ends) else ref
    assert torch.equal(ours[0], ref) and torch.equal(ours[1], ref)


def test_first_token_follows_the_model_distribution(tiny):
    model, tok = tiny
    x = encode(tok, PROMPT)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=x).logits[0, -1].float() / 0.7, -1)
    n = 4000
    drawn = torch.stack([c[0] for c in sample(model, tok, x, n, 1, temperature=0.7, seed=11)])
    freq = torch.bincount(drawn, minlength=probs.numel()).float() / n
    top = probs.topk(5).indices
    # binomial standard error at n=4000 is <= 0.008: 4 sigma
    assert torch.all((freq[top] - probs[top]).abs() < 0.032), (freq[top], probs[top])
    assert freq.sum() == pytest.approx(1.0)


def test_rows_are_cut_after_end_of_turn_and_decoding_stops_when_all_ended(tiny):
    model, tok = tiny
    x = encode(tok, PROMPT)
    eos = tok.eos_token_id
    # make end-of-turn the only likely token after the first one: every row ends at token 2
    bias = torch.zeros(model.config.vocab_size)
    bias[eos] = 50.0
    calls = []

    def push_eos(_module, _args, output):
        calls.append(1)
        if len(calls) >= 2:  # from the first decode step on
            output.logits = output.logits + bias
        return output

    handle = model.register_forward_hook(push_eos)
    try:
        comps = sample(model, tok, x, 3, 40, seed=2)
    finally:
        handle.remove()
    assert all(len(c) == 2 and c[-1].item() == eos for c in comps)
    assert len(calls) == 2  # prefill + one decode step, not 40


def test_same_seed_same_samples_and_caller_rng_untouched(tiny):
    model, tok = tiny
    x = encode(tok, PROMPT)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = sample(model, tok, x, 3, 8, seed=4)
    after = torch.rand(1)
    b = sample(model, tok, x, 3, 8, seed=4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(before, after)


def test_sampling_from_the_students_graded_pass_changes_neither_samples_nor_gradient():
    """OPSD's step 1: the student's pass over x is made with grad, the sampler starts from a
    detached copy of it, and the same pass then scores the samples (consume=True). Samples
    equal those of a plain `sample`, the pass stays intact for scoring, and the gradient
    equals that of separate full forwards of x + y."""
    from peft import LoraConfig, get_peft_model

    from learnagent.learning.rollout import batch_completion_logprobs, encode_prefix

    model, tok = make_tiny_model(seed=5)
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    pm.eval()
    x = encode(tok, PROMPT)
    plain = sample(pm, tok, x, 3, 6, seed=9)
    prefix = encode_prefix(pm, x)
    assert prefix.last_logits.requires_grad
    reused = sample(pm, tok, x, 3, 6, seed=9, prefix=prefix)
    assert all(torch.equal(a, b) for a, b in zip(plain, reused))
    keys = prefix.cache.layers[0].keys  # untouched: one row, the prompt only, still in the graph
    assert keys.shape[0] == 1 and keys.shape[-2] == x.shape[1] and keys.requires_grad

    params = [p for p in pm.parameters() if p.requires_grad]
    weights = torch.randn(len(tok), generator=torch.Generator().manual_seed(0))
    logp, mask = batch_completion_logprobs(pm, x, reused, prefix, consume=True)
    grads = torch.autograd.grad((logp[mask] * weights).sum(), params)
    ref = torch.cat([pm(input_ids=torch.cat([x[0], c])[None]).logits[0, x.shape[1] - 1: -1].float().log_softmax(-1)
                     for c in reused])
    ref_grads = torch.autograd.grad((ref * weights).sum(), params)
    assert any(g.abs().sum() > 0 for g in ref_grads)
    # Same gradient up to fp32 summation order: the two paths add the same terms in a different
    # order (cached prefix vs one full forward). Measured: the largest difference is ~5e-7 of the
    # tensor's largest entry (up to 7e-5 absolute on entries of ~150), so compare relative to each
    # tensor's scale; a wrong gradient (a missing prompt term) is off by far more than 1e-5 of it.
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(grads, ref_grads))


def test_seeded_samples_equal_hf_generate_with_the_same_seed(tiny):
    """Same distribution and the same draws: after the shared prefill, each step is one
    multinomial over the n rows, as in `generate(do_sample=True, num_return_sequences=n)`."""
    model, tok = tiny
    x = encode(tok, PROMPT)
    ours = sample(model, tok, x, 3, 10, seed=7)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(7)
        ref = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=10, do_sample=True,
                             top_k=0, top_p=1.0, temperature=1.0, num_return_sequences=3,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, x.shape[1]:]
    for row, mine in zip(ref, ours):
        ends = (row == tok.eos_token_id).nonzero()
        assert torch.equal(row[: int(ends[0]) + 1] if len(ends) else row, mine)
