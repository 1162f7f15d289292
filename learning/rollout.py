"""Rollouts and scoring shared by training (opsd.py) and evaluation (gate/evaluate).

One PeftModel holds every adapter (the trainable "student", the frozen previous one as
"teacher", ...). `adapter_context` switches between them, and to the bare base with
`disable_adapter()`, so the base weights are loaded once.

Conventions:
- `encode` gives the chat-templated prompt ids [1, T]; with `context`, the experience
  goes first as its own system message, so teacher prompts share a long prefix.
- `sample` returns completion ids only, cut after the first end-of-turn token, which is
  KEPT (the student must also learn when to stop). Padding is never returned.
- `completion_logprobs` gives log-probs [L, V] where row t predicts completion token t.
- A teacher prompt is encoded once per episode into a `PrefixCache` (its KV cache plus
  the last position's logits) and reused for all G samples of that episode.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from learnagent.learning.losses import full_reverse_kl, topk_reverse_kl

EXPERIENCE_HEADER = "Experience from this repository:\n"

GENERAL_PROMPTS: list[list[dict]] = [
    [{"role": "user", "content": text}] for text in (
        "Write a Python function that returns the n-th Fibonacci number.",
        "Explain what a race condition is in two sentences.",
        "Write a bash one-liner that counts the lines of all .py files in a folder.",
        "How do I reverse a list in Python?",
        "Write a SQL query that returns the ten most recent rows of a table named events.",
        "What does `git rebase -i` do?",
        "Write a JavaScript function that debounces another function.",
        "Fix the bug: `def mean(xs): return sum(xs) / len(xs)` fails on an empty list.",
        "Write a unit test with pytest for a function add(a, b).",
        "What is the difference between a process and a thread?",
        "Write a Rust function that checks whether a string is a palindrome.",
        "Summarise what a REST API is for a new programmer.",
    )
]

# Replay prompts for the retention term when a repository has few earlier episodes: general work
# in both forms the adapter is used in (chat, and raw code it continues). Kept apart from
# GENERAL_PROMPTS, which measure drift: a drift measured on prompts trained on would flatter.
RETENTION_PROMPTS: list[list[dict] | str] = [
    [{"role": "user", "content": text}] for text in (
        "Write a Python function that merges two sorted lists.",
        "What is a Python generator? Answer briefly.",
        "Write a shell command that finds the largest files in a directory.",
        "Write a Go function that reverses a slice of ints.",
        "Explain the difference between a list and a tuple in Python.",
        "Write a Python class for a bank account with deposit and withdraw methods.",
    )
] + [  # raw text ends on a non-blank character (a trailing "\n\n" is one token files never end a line with)
    '"""Count word frequencies in a text file."""\n\nimport sys\nfrom collections import Counter',
    "import json\n\n\ndef load_config(path):",
    '"""A minimal HTTP health check."""\n\nimport urllib.request',
    "class LinkedList:\n    def __init__(self):\n        self.head = None\n\n    def append(self, value):",
    "def binary_search(items, target):",
    '"""Train a linear regression on a CSV file."""\n\nimport pandas as pd',
]

# ---------------------------------------------------------------- adapters

@contextlib.contextmanager
def adapter_context(model, name: str | None):
    """Run the block with adapter `name` active, or the bare base model when `name` is None.

    PEFT's `set_adapter` also flips `requires_grad` (active adapter trainable, others
    frozen); the flags are restored on exit so switching to the teacher never unfreezes it
    nor freezes the student.
    """
    is_peft = hasattr(model, "peft_config")
    if not is_peft:
        if name is not None:
            raise ValueError(f"adapter '{name}' requested but the model holds no adapters")
        yield model
        return
    if name is None:
        with model.disable_adapter():
            yield model
        return
    if name not in model.peft_config:
        raise ValueError(f"no adapter named '{name}' (loaded: {', '.join(model.peft_config)})")
    previous = model.active_adapter
    grads = {n: p.requires_grad for n, p in model.named_parameters() if "lora_" in n}
    model.set_adapter(name)
    try:
        yield model
    finally:
        model.set_adapter(previous)
        for n, p in model.named_parameters():
            if n in grads:
                p.requires_grad_(grads[n])


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------- encoding and sampling

def context_message(context: str) -> dict:
    return {"role": "system", "content": EXPERIENCE_HEADER + context}


def text_with_context(prompt: str, context: str | None) -> str:
    """A raw-text prompt as the teacher reads it: the context, one blank line, the prompt."""
    return context + "\n\n" + prompt if context else prompt


def encode(tokenizer, prompt: Sequence[dict] | str, context: str | None = None) -> torch.LongTensor:
    """The prompt as ids [1, T], in one of two forms.

    Chat (`prompt` is a list of messages): the chat template with the generation prompt; with
    `context`, the teacher's view puts the experience as a system message BEFORE x.
    Text (`prompt` is a str, probes' `mode: text` and code-continuation pairs): the raw text the
    model continues, no template; with `context`, `context + "\n\n" + prompt`.
    """
    if isinstance(prompt, str):
        return encode_text(tokenizer, prompt, context)
    messages = list(prompt)
    if context:
        messages = [context_message(context)] + messages
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")
    return out["input_ids"].long()


def at_token_boundary(prompt, target: str | None):
    """A raw-text pair cut where a file's tokens would be cut: the prompt's trailing whitespace
    moves to the start of the target. BPE tokenizers merge whitespace with what follows ("\n    "
    + " return", "\n","\n","from"), so a prompt ending in "\n" or "\n\n" ends with a token that
    never stands there in a file, and the model reads it as "more whitespace follows". Chat
    prompts are returned unchanged."""
    if not isinstance(prompt, str):
        return prompt, target
    kept = prompt.rstrip()
    return kept, (prompt[len(kept):] + target) if target is not None else None


def encode_text(tokenizer, text: str, context: str | None = None) -> torch.LongTensor:
    """Raw text into ids [1, T] (no chat template); with `context`, the context first, then one
    blank line. An empty text (a file from its start) is the end-of-text token, so there is a
    position that predicts the first token."""
    ids = tokenizer(text_with_context(text, context))["input_ids"] or [tokenizer.eos_token_id]
    return torch.tensor([ids], dtype=torch.long)


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    if ids is None:
        ids = tokenizer.eos_token_id
    return set(ids if isinstance(ids, (list, tuple)) else [ids])


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Seed torch's RNG inside the block only, leaving the caller's stream untouched."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def sample(model, tokenizer, prompt_ids: torch.LongTensor, n: int, max_new_tokens: int,
           temperature: float = 1.0, seed: int | None = None,
           prefix: PrefixCache | None = None) -> list[torch.LongTensor]:
    """Draw `n` completions of `prompt_ids` [1, T]; each is cut after its first end-of-turn token.

    Sampling is from the plain softmax(logits / temperature) (no top-k/top-p), so the
    samples are on-policy for the model being scored. temperature <= 0 means greedy.

    The prompt runs ONCE and its KV cache is repeated to the n rows (HF `generate` with
    `num_return_sequences=n` prefills n copies), and decoding is a plain loop over the
    model's forward: no logits processors, no padding or attention mask (all rows share
    the prompt), and only the last position's logits are computed. It stops as soon as
    every row has ended its turn. With `prefix` (this model's `PrefixCache` of `prompt_ids`,
    e.g. the student's own pass over x that will also score the samples) the prompt is not
    run at all: a detached copy of its cache seeds the rows and `prefix` stays intact.
    """
    device = _device(model)
    prompt_ids = prompt_ids.to(device)
    eos = torch.tensor(sorted(_eos_ids(model, tokenizer)), device=device)
    greedy = temperature is None or temperature <= 0
    rows = torch.empty((n, max_new_tokens), dtype=torch.long, device=device)
    ended = torch.zeros(n, dtype=torch.bool, device=device)
    with _seeded(seed, device):
        if prefix is None:
            prefix = encode_prefix(model, prompt_ids)
            cache = prefix.cache
        else:
            cache = detached_cache(prefix.cache)
        cache.batch_repeat_interleave(n)
        logits = prefix.last_logits.detach().expand(n, -1)
        steps = 0
        for t in range(max_new_tokens):
            if greedy:
                token = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(logits.float() / float(temperature), dim=-1)
                token = torch.multinomial(probs, 1).squeeze(1)
            rows[:, t] = token
            steps = t + 1
            ended |= torch.isin(token, eos)
            if steps == max_new_tokens or bool(ended.all()):
                break
            # an ended row keeps decoding (its tokens are cut below): the batch keeps its shape
            logits = model(input_ids=token[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
    completions = []
    for row in rows[:, :steps]:
        ends = torch.isin(row, eos).nonzero()
        completions.append(row[: int(ends[0]) + 1].clone() if len(ends) else row.clone())
    return completions


# ---------------------------------------------------------------- scoring

@dataclass
class PrefixCache:
    """A prompt's KV cache and the logits at its last position (they predict completion token 0)."""

    cache: object
    last_logits: torch.Tensor  # [1, V]
    length: int


def encode_prefix(model, prompt_ids: torch.LongTensor) -> PrefixCache:
    """Run `prompt_ids` [1, T] once (with grad when grad is enabled) into a `PrefixCache`."""
    prompt_ids = prompt_ids.to(_device(model))
    out = model(input_ids=prompt_ids, use_cache=True, logits_to_keep=1)
    return PrefixCache(cache=out.cache, last_logits=out.logits[:, -1, :], length=prompt_ids.shape[1])


def detached_cache(cache):
    """A copy of a KV cache whose tensors are detached from autograd (deepcopy refuses tensors
    that carry a graph): sampling from it neither extends nor frees the original."""
    memo = {}
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                memo[id(t)] = t.detach().clone()
    return copy.deepcopy(cache, memo)


@torch.no_grad()
def build_prefix_cache(model, prompt_ids: torch.LongTensor) -> PrefixCache:
    """Run `prompt_ids` [1, T] once, no grad; the result can score any number of completions of it."""
    return encode_prefix(model, prompt_ids)


def pad_completions(completions: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D completions into ids [G, Lmax] and a bool mask of real tokens."""
    lmax = max(len(c) for c in completions)
    device = completions[0].device
    ids = torch.full((len(completions), lmax), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(completions), lmax), dtype=torch.bool, device=device)
    for i, c in enumerate(completions):
        ids[i, : len(c)] = c
        mask[i, : len(c)] = True
    return ids, mask


def batch_completion_logprobs(model, prompt_ids: torch.LongTensor, completions: Sequence[torch.Tensor],
                              prefix_cache: PrefixCache | None = None,
                              consume: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [G, Lmax, V] (float32) of G completions of one prompt, and their mask [G, Lmax].

    The prompt runs ONCE for all G completions: its KV cache is expanded to the batch and
    only completion tokens run after it, so only completion-position logits exist. Without
    `prefix_cache` the prompt is encoded here, with grad when grad is enabled (the student:
    the expand is differentiable, so the gradient equals that of G full forwards). With
    one (the teacher's, built once per episode), a copy of it is used and it stays intact,
    unless `consume`: then it is extended in place and its graph, if any, carries the
    gradient (the student's pass over x, made with grad before sampling from it).
    """
    device = _device(model)
    ids, mask = pad_completions([c.to(device) for c in completions])
    g, lmax = ids.shape
    fresh = prefix_cache is None or consume
    if prefix_cache is None:  # run the prompt once for all G (with grad when enabled: expand is differentiable)
        prefix_cache = encode_prefix(model, prompt_ids)
    first = prefix_cache.last_logits.to(device).unsqueeze(1).expand(g, 1, -1)
    if lmax == 1:
        logits = first
    else:
        cache = prefix_cache.cache if fresh else copy.deepcopy(prefix_cache.cache)
        cache.batch_repeat_interleave(g)
        attn = torch.cat([torch.ones((g, prefix_cache.length), dtype=torch.long, device=device),
                          mask[:, :-1].long()], dim=1)
        rest = model(input_ids=ids[:, :-1], attention_mask=attn, cache=cache, use_cache=True).logits
        logits = torch.cat([first.to(rest.dtype), rest], dim=1)
    return torch.log_softmax(logits.float(), dim=-1), mask


def completion_logprobs(model, prompt_ids: torch.LongTensor, completion_ids: torch.Tensor,
                        prefix_cache: PrefixCache | None = None) -> torch.Tensor:
    """Log-probs [L, V] at the completion positions (row t predicts completion token t)."""
    logp, _ = batch_completion_logprobs(model, prompt_ids, [completion_ids.reshape(-1)], prefix_cache)
    return logp[0]


# ---------------------------------------------------------------- metrics

@torch.no_grad()
def distillation_gap(model, tokenizer, pairs: Iterable, *, student_adapter: str | None,
                     teacher_adapter: str | None, samples: int = 1, max_new_tokens: int = 48,
                     temperature: float = 1.0, seed: int = 0, k: int = 20) -> float:
    """Mean per-token top-k reverse KL of the student (x only) to the teacher (c then x).

    Measured on the student's own samples, `samples` per pair, seeded per pair so two
    adapters are compared on equally drawn randomness. `pairs` need `.prompt` and `.context`.
    """
    total, count = 0.0, 0
    for i, pair in enumerate(pairs):
        x_ids = encode(tokenizer, pair.prompt)
        with adapter_context(model, student_adapter):
            completions = sample(model, tokenizer, x_ids, samples, max_new_tokens, temperature, seed=seed + i)
        kl_sum, tokens = gap_terms(model, x_ids, encode(tokenizer, pair.prompt, pair.context), completions,
                                   student_adapter=student_adapter, teacher_adapter=teacher_adapter, k=k)
        total += kl_sum
        count += tokens
    return total / max(count, 1)


@torch.no_grad()
def gap_terms(model, x_ids, t_ids, completions, *, student_adapter: str | None, teacher_adapter: str | None,
              k: int = 20) -> tuple[float, int]:
    """Summed per-token top-k reverse KL of the student (on x) to the teacher (on c then x) over
    the given completions, and the number of tokens summed: callers that already sampled (eval
    measures adherence on the same samples) score them without sampling again."""
    with adapter_context(model, student_adapter):
        s_logp, mask = batch_completion_logprobs(model, x_ids, completions)
    with adapter_context(model, teacher_adapter):
        t_logp, _ = batch_completion_logprobs(model, t_ids, completions, build_prefix_cache(model, t_ids))
    kl = topk_reverse_kl(s_logp, t_logp, k)
    return float(kl[mask].sum()), int(mask.sum())


@torch.no_grad()
def drift(model, tokenizer, prompts: Sequence, *, adapter: str | None, max_new_tokens: int = 32,
          seed: int = 0) -> float:
    """Mean per-token KL(adapter || base) on the adapter's own samples for general prompts.

    `prompts` are message lists, or plain strings: raw text the model continues (mode "text").
    """
    if adapter is None:
        return 0.0
    total, count = 0.0, 0
    for i, prompt in enumerate(prompts):
        ids = encode(tokenizer, prompt)
        with adapter_context(model, adapter):
            completions = sample(model, tokenizer, ids, 1, max_new_tokens, 1.0, seed=seed + i)
            a_logp, mask = batch_completion_logprobs(model, ids, completions)
        with adapter_context(model, None):
            b_logp, _ = batch_completion_logprobs(model, ids, completions)
        kl = full_reverse_kl(a_logp, b_logp)
        total += float(kl[mask].sum())
        count += int(mask.sum())
    return total / max(count, 1)
