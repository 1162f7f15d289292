"""Constrained decoding: every token a local engine draws keeps the reply inside a grammar.

The library is llguidance (Lark grammars, Earley parser over a lazy lexer, token masks computed
in Rust): picked over xgrammar, outlines-core and lm-format-enforcer on measured speed on this
CPU, offline (no hub downloads: the tokenizer comes from the model folder) and maintenance
(see docs/benchmarks/grammar.md). It is an ordinary dependency (a ~4 MB wheel); if it is missing
anyway, engines decode unconstrained and record that no grammar was applied.

`Grammar.for_vocabulary` compiles the tokenizer once per model (~100 ms for a 49k vocabulary);
each reply gets a fresh `Constraint`: `allowed()` is the mask of the next token, `advance(token)`
moves it on. `Constraint` is also a transformers `LogitsProcessor` (`__call__(input_ids, scores)`).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

from learnagent.core.errors import LearnagentError

LIBRARY = "llguidance"


class GrammarError(LearnagentError):
    pass


def available() -> bool:
    return importlib.util.find_spec("llguidance") is not None


class Grammar:
    """A Lark grammar compiled against one tokenizer."""

    library = LIBRARY

    def __init__(self, lark: str, lltokenizer, vocab_size: int):
        import llguidance

        self.lark = lark
        self.lltokenizer = lltokenizer
        self.vocab_size = vocab_size  # the model's logits width (may exceed the tokenizer's)
        self.spec = llguidance.LLMatcher.grammar_from_lark(lark)
        problem = llguidance.LLMatcher.validate_grammar(self.spec, lltokenizer)
        if problem and not problem.startswith("WARNING"):
            raise GrammarError(f"the reply grammar does not compile: {problem.splitlines()[0]}")

    def start(self) -> "Constraint":
        return Constraint(self)


class Constraint:
    """One reply's position in the grammar."""

    def __init__(self, grammar: Grammar):
        import llguidance

        self.grammar = grammar
        self.matcher = llguidance.LLMatcher(grammar.lltokenizer, grammar.spec, log_level=0)
        self.error: str | None = self.matcher.get_error() or None
        self._prompt_len: int | None = None

    def allowed(self):
        """Boolean numpy mask over the model's vocabulary: the tokens the grammar allows next."""
        import numpy as np

        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little").astype(bool)
        if mask.shape[0] >= self.grammar.vocab_size:
            return mask[:self.grammar.vocab_size]
        return np.concatenate([mask, np.zeros(self.grammar.vocab_size - mask.shape[0], dtype=bool)])

    def advance(self, token: int) -> None:
        if self.error is None and not self.matcher.consume_token(int(token)):
            self.error = self.matcher.get_error() or f"token {token} refused"

    @property
    def active(self) -> bool:
        return self.error is None and not self.matcher.is_stopped()

    def __call__(self, input_ids, scores):
        """transformers LogitsProcessor: mask `scores` (batch of 1) to what the grammar allows."""
        import torch

        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        elif input_ids.shape[1] > self._prompt_len:
            self.advance(int(input_ids[0, -1]))
            self._prompt_len = input_ids.shape[1]
        if self.error is not None:  # never seen; decode on unconstrained rather than fail the step
            return scores
        allowed = torch.from_numpy(self.allowed()[:scores.shape[-1]]).to(scores.device)
        if scores.shape[-1] > allowed.shape[0]:
            allowed = torch.cat([allowed, torch.zeros(scores.shape[-1] - allowed.shape[0], dtype=torch.bool,
                                                      device=scores.device)])
        return scores.masked_fill(~allowed, float("-inf"))


@lru_cache(maxsize=8)
def _hf_lltokenizer(tokenizer_key: int, tokenizer, eos: int):
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, eos_token=eos)


def for_tokenizer(lark: str, tokenizer, stop_ids: list[int], vocab_size: int | None = None) -> Grammar | None:
    """`lark` compiled for a transformers tokenizer; None when llguidance is not installed.

    The reply's end is the chat template's end of turn when the tokenizer has one (what the
    model was trained to write), else its EOS.
    """
    if not available():
        return None
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = end if isinstance(end, int) and end in stop_ids else (stop_ids[0] if stop_ids else tokenizer.eos_token_id)
    lltok = _hf_lltokenizer(id(tokenizer), tokenizer, int(eos))
    return Grammar(lark, lltok, int(vocab_size or len(tokenizer)))
