"""What the model writes on held-out code of the repository: a behavioural measure with no regex.

For every line to predict of the held-out documents (learning/code_pairs.py: held-out files at
HEAD, and the lines held-out episodes added), given the code before it as raw text:
- `nll`: the per-token negative log-likelihood of the line the user actually wrote;
- `exact`: greedy next-line exact match — would greedy decoding from the line's start write
  exactly this line (up to its end of line)?
for each variant: the base model, the base model reading the retrieved context (conventions +
similar training files: the ceiling), and base + adapter without context. Internalization ratio
`(adapter − base) / (context − base)` per metric: 1 = the adapter writes without context what the
context makes the model write. No sampling anywhere: the measure is deterministic.

Cost. Teacher forcing scores every line of a document in ONE pass (chunked, the KV cache carried
from chunk to chunk): each line is predicted from the cached prefix instead of re-encoding the
code before it per cut. Exact match comes from the same pass: greedy decoding reproduces a line
iff at each of its tokens the argmax (given the true tokens before it) is that token, and at its
end-of-line token the argmax also ends the line. This equals generating greedily and comparing
the text except when the model would write the same text in other tokens (counted as a miss;
measured on SmolLM2 in docs/sleep.md). Short documents go through in right-padded batches; the
conventions block that starts every retrieved context is encoded once per variant and its cache
reused; segments of a document that retrieved the same files share one pass.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

# Code that belongs to no repository. Drift in the text form is measured on it: `code_drift`
# teacher-forces every snippet (deterministic), and eval samples continuations of their starts.
GENERAL_CODE: tuple[str, ...] = (
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "import os\nimport sys\n\n\ndef main(argv):\n    path = argv[1] if len(argv) > 1 else os.getcwd()\n"
    "    for name in sorted(os.listdir(path)):\n        print(name)\n    return 0\n\n\n"
    "if __name__ == \"__main__\":\n    sys.exit(main(sys.argv))\n",
    "import json\n\n\ndef load_settings(path):\n    with open(path) as fh:\n        data = json.load(fh)\n"
    "    return {key.lower(): value for key, value in data.items()}\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "from dataclasses import dataclass\n\n\n@dataclass\nclass Point:\n    x: float\n    y: float\n\n"
    "    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n",
    "function debounce(fn, ms) {\n  let timer;\n  return (...args) => {\n    clearTimeout(timer);\n"
    "    timer = setTimeout(() => fn(...args), ms);\n  };\n}\n",
    "#include <stdio.h>\n\nint main(void) {\n    int total = 0;\n    for (int i = 1; i <= 10; i++) {\n"
    "        total += i;\n    }\n    printf(\"%d\\n\", total);\n    return 0;\n}\n",
    "fn is_palindrome(s: &str) -> bool {\n    let chars: Vec<char> = s.chars().collect();\n"
    "    chars.iter().eq(chars.iter().rev())\n}\n",
    "package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() {\n"
    "\tfmt.Println(strings.ToUpper(\"hello\"))\n}\n",
    "#!/usr/bin/env bash\nset -euo pipefail\n\nfor file in \"$@\"; do\n  wc -l \"$file\"\ndone\n",
    "SELECT name, COUNT(*) AS orders\nFROM customers\nJOIN orders ON orders.customer_id = customers.id\n"
    "GROUP BY name\nORDER BY orders DESC;\n",
    "public class Counter {\n    private int count = 0;\n\n    public void increment() {\n        count++;\n"
    "    }\n\n    public int get() {\n        return count;\n    }\n}\n",
)
# their first lines: what eval's text-form drift continues (sampled)
GENERAL_CODE_STARTS: tuple[str, ...] = tuple(code.split("\n", 1)[0] + "\n" for code in GENERAL_CODE)

METRICS = ("nll", "exact")


@dataclass(frozen=True)
class Variant:
    name: str
    adapter: str | None = None  # a loaded adapter's name; None: the bare base model
    context: bool = False  # read the retrieved context first


@dataclass
class LineScore:
    doc: str  # CodeDoc.key
    origin: str  # "file" | "episode"
    line: int  # 1-based line number in the document
    tokens: int
    nll: float  # summed over the line's tokens (nats)
    exact: bool


@dataclass
class MeasureConfig:
    max_tokens: int = 12_000  # document tokens measured in all (held-out docs in a stable hash order)
    max_doc_tokens: int = 2048  # lines past this many tokens of a document are not measured
    chunk_tokens: int = 1024  # tokens per forward pass (the KV cache carries the rest)
    batch_tokens: int = 2048  # padded tokens per batch of short documents


@dataclass
class _Doc:
    """A document tokenized once for every variant: its ids and each measured line's token span."""

    doc: object  # CodeDoc
    ids: list[int]
    lines: list[tuple[int, int, int, int]]  # (char offset, line number, first token, end token exclusive)

    @property
    def end(self) -> int:
        return max(e for _o, _n, _f, e in self.lines)


# ---------------------------------------------------------------- preparing documents

def prepare(tokenizer, docs, config: MeasureConfig | None = None) -> list[_Doc]:
    """Tokenize documents (in a stable order, up to `config.max_tokens`) and map lines to tokens.

    A line owns the tokens that START in it, its newline included (byte-level BPE glues the next
    line's indentation to that newline: "\\n   " belongs to the line it ends). Lines with no token
    of their own, lines at the very start (nothing before them) and lines past `max_doc_tokens`
    are not measured.
    """
    cfg = config or MeasureConfig()
    order = sorted(docs, key=lambda d: hashlib.sha256(d.key.encode()).hexdigest())
    out, used = [], 0
    for doc in order:
        enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"][: cfg.max_doc_tokens]
        starts = [s for s, _e in enc["offset_mapping"][: len(ids)]]
        lines = []
        for offset in doc.lines:
            newline = doc.text.find("\n", offset)
            last = len(doc.text) if newline < 0 else newline  # the line's last character (its newline)
            first, end = bisect.bisect_left(starts, offset), bisect.bisect_right(starts, last)
            if 0 < first < end and end < len(ids) + (newline < 0):
                lines.append((offset, doc.text.count("\n", 0, offset) + 1, first, end))
        if not lines:
            continue
        if used and used + lines[-1][3] > cfg.max_tokens:
            break
        used += lines[-1][3]
        out.append(_Doc(doc, ids, lines))
    return out


# ---------------------------------------------------------------- scoring

def _special_prefix(tokenizer) -> list[int]:
    """What the tokenizer puts before any text (a BOS for some models; nothing for SmolLM2)."""
    eos = tokenizer.eos_token_id
    return [i for i in tokenizer("", add_special_tokens=True)["input_ids"] if i != eos]


def _predict(logits, targets):
    """(nll, argmax) per position from logits [.., V] and the true next tokens [..]."""
    import torch

    logits = logits.float()
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return nll, logits.argmax(dim=-1)


class _Scorer:
    """Runs the passes of one variant; fills per-document arrays of (nll, argmax) per token."""

    def __init__(self, model, tokenizer, config: MeasureConfig, conventions_block: str = ""):
        self.model, self.tokenizer, self.cfg = model, tokenizer, config
        self.conventions_block = conventions_block
        self.special = _special_prefix(tokenizer)
        self._prefix_cache: dict[str, tuple] = {}

    def _device(self):
        return next(self.model.parameters()).device

    def batch(self, jobs: list[tuple[_Doc, int]]) -> dict:
        """No-context passes of short documents, right-padded into one batch: {doc id: (nll, argmax)}."""
        import torch

        n0 = len(self.special)
        rows = [self.special + d.ids[:end] for d, end in jobs]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        ids, mask = ids.to(self._device()), mask.to(self._device())
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        nll, arg = _predict(logits[:, :-1], ids[:, 1:])
        out = {}
        for i, (d, end) in enumerate(jobs):
            # position p predicts row token p + 1, i.e. document token p + 1 - n0
            out[id(d)] = (_place(nll[i], n0, end), _place(arg[i], n0, end))
        return out

    def run(self, d: _Doc, end: int, context: str | None, first: int) -> tuple:
        """One document (up to token `end`) after an optional context, chunked with the KV cache
        carried; (nll, argmax) for document tokens `first`..`end - 1` (index = document token)."""
        import torch

        cache, n_prefix = None, len(self.special)
        prefix_ids = list(self.special)
        if context:
            conv, rest = self._split(context)
            if conv:
                cache, n_conv = self._cached_prefix(conv)
                cache = copy.deepcopy(cache)
                prefix_ids = self.tokenizer(rest + "\n\n", add_special_tokens=False)["input_ids"] if rest else []
                n_prefix = n_conv + len(prefix_ids)
            else:
                prefix_ids = self.special + self.tokenizer(context + "\n\n", add_special_tokens=False)["input_ids"]
                n_prefix = len(prefix_ids)
        seq = prefix_ids + d.ids[:end]
        start_pos = n_prefix - len(prefix_ids)  # absolute position of seq[0]
        need_from = n_prefix + first - 1  # absolute position whose logits predict document token `first`
        assert first >= 1 and need_from >= start_pos  # a measured line always has code before it
        device = self._device()
        nll = torch.full((end,), math.nan)
        arg = torch.full((end,), -1, dtype=torch.long)
        for lo in range(0, len(seq), self.cfg.chunk_tokens):
            chunk = seq[lo: lo + self.cfg.chunk_tokens]
            a_lo, a_hi = start_pos + lo, start_pos + lo + len(chunk)  # absolute positions of the chunk
            keep = a_hi - max(a_lo, need_from)
            out = self.model(input_ids=torch.tensor([chunk], device=device), cache=cache, use_cache=True,
                             logits_to_keep=max(keep, 1))
            cache = out.cache
            if keep <= 0:
                continue
            positions = range(a_hi - keep, a_hi)  # predicting document tokens p + 1 - n_prefix
            targets = [p + 1 - n_prefix for p in positions]
            valid = [i for i, t in enumerate(targets) if 0 <= t < end]
            if not valid:
                continue
            logits = out.logits[0, valid[0]: valid[-1] + 1]
            tgt = torch.tensor([d.ids[t] for t in targets[valid[0]: valid[-1] + 1]], device=device)
            n, a = _predict(logits, tgt)
            t0 = targets[valid[0]]
            nll[t0: t0 + len(n)], arg[t0: t0 + len(a)] = n.cpu(), a.cpu()
        return nll, arg

    def _split(self, context: str) -> tuple[str, str]:
        """(the shared conventions block, the rest) of a retrieved context."""
        block = self.conventions_block
        if block and context.startswith(block + "\n\n"):
            return block, context[len(block) + 2:]
        if block and context == block:
            return block, ""
        return "", context

    def _cached_prefix(self, conv: str):
        """The KV cache of `special + conventions + blank line`, encoded once per variant."""
        if conv not in self._prefix_cache:
            import torch

            ids = self.special + self.tokenizer(conv + "\n\n", add_special_tokens=False)["input_ids"]
            out = self.model(input_ids=torch.tensor([ids], device=self._device()), use_cache=True,
                             logits_to_keep=1)
            self._prefix_cache[conv] = (out.cache, len(ids))
        return self._prefix_cache[conv]


def _place(values, n0: int, end: int):
    """A row's per-position values -> per document token: row position p predicts row token p + 1,
    which is document token p + 1 - n0 (n0 special tokens come first). Token 0 without a special
    prefix has no prediction (NaN / -1)."""
    import torch

    fill = math.nan if values.dtype.is_floating_point else -1
    out = torch.full((end,), fill, dtype=values.dtype)
    t0 = max(0, 1 - n0)
    out[t0:end] = values[t0 + n0 - 1: end + n0 - 1].cpu()
    return out


def _line_exact(true_ids: list[int], arg_ids: list[int], text_of: Callable[[int], str]) -> bool:
    """Would greedy decoding write this line? Every token until the one ending the line must be the
    argmax; at that one the argmax must also end the line there (what follows the newline, the next
    line's indentation, is the next line's business)."""
    for t, a in zip(true_ids, arg_ids):
        text = text_of(t)
        if "\n" in text:
            guess = text_of(a)
            return "\n" in guess and guess.split("\n", 1)[0] == text.split("\n", 1)[0]
        if a != t:
            return False
    return True  # the file's last line, without a newline: every token matched


def score(model, tokenizer, corpus, docs, variants: list[Variant], *, config: MeasureConfig | None = None,
          progress: Callable[[str, int, int], None] | None = None) -> dict[str, list[LineScore]]:
    """Per variant, a LineScore for every measured line of `docs` (same lines, same order).
    `progress(variant, documents done, documents)` is called as the passes go."""
    import torch

    from learnagent.learning.rollout import adapter_context

    cfg = config or MeasureConfig()
    prepared = prepare(tokenizer, docs, cfg)
    texts: dict[int, str] = {}

    def text_of(i: int) -> str:
        if i not in texts:
            texts[i] = tokenizer.decode([i])
        return texts[i]

    say = progress or (lambda _v, _d, _n: None)
    results: dict[str, list[LineScore]] = {}
    for variant in variants:
        scorer = _Scorer(model, tokenizer, cfg, corpus.conventions_block if corpus is not None else "")
        per_doc: dict[int, tuple] = {}
        with adapter_context(model, variant.adapter), torch.no_grad():
            if variant.context:
                for i, d in enumerate(prepared):
                    say(variant.name, i, len(prepared))
                    groups: dict[str, list] = {}
                    for line in d.lines:
                        groups.setdefault(corpus.context(d.doc, line[0])[0], []).append(line)
                    nll = torch.full((d.end,), math.nan)
                    arg = torch.full((d.end,), -1, dtype=torch.long)
                    for context, lines in groups.items():
                        first, end = min(ln[2] for ln in lines), max(ln[3] for ln in lines)
                        n, a = scorer.run(d, end, context, first)
                        for _o, _num, f, e in lines:
                            nll[f:e], arg[f:e] = n[f:e], a[f:e]
                    per_doc[id(d)] = (nll, arg)
            else:
                short = sorted((d for d in prepared if d.end + len(scorer.special) <= cfg.chunk_tokens),
                               key=lambda d: d.end)
                batch: list = []
                for d in short + [None]:
                    if batch and (d is None or (len(batch) + 1) * (d.end + len(scorer.special)) > cfg.batch_tokens):
                        say(variant.name, len(per_doc), len(prepared))
                        per_doc.update(scorer.batch([(b, b.end) for b in batch]))
                        batch = []
                    if d is not None:
                        batch.append(d)
                for d in prepared:
                    if id(d) not in per_doc:
                        say(variant.name, len(per_doc), len(prepared))
                        per_doc[id(d)] = scorer.run(d, d.end, None, min(ln[2] for ln in d.lines))
        lines_out = []
        for d in prepared:
            nll, arg = per_doc[id(d)]
            for _offset, number, f, e in d.lines:
                lines_out.append(LineScore(doc=d.doc.key, origin=d.doc.origin, line=number, tokens=e - f,
                                           nll=float(nll[f:e].sum()),
                                           exact=_line_exact(d.ids[f:e], arg[f:e].tolist(), text_of)))
        results[variant.name] = lines_out
        say(variant.name, len(prepared), len(prepared))
    return results


def code_drift(model, tokenizer, adapter: str | None, texts=GENERAL_CODE) -> float:
    """Mean per-token KL(adapter || base) over the full vocabulary, teacher-forced on code that
    belongs to no repository: how far the adapter moved the model's next-token distribution on
    unrelated code (an adapter that writes the repository's imports everywhere moves it after
    `import`). Deterministic: no sampling. 0 without an adapter."""
    import torch

    from learnagent.learning.losses import full_reverse_kl
    from learnagent.learning.rollout import adapter_context

    if adapter is None:
        return 0.0
    special = _special_prefix(tokenizer)
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([special + tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
            with adapter_context(model, adapter):
                a = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
            with adapter_context(model, None):
                b = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
            kl = full_reverse_kl(a, b)
            total, count = total + float(kl.sum()), count + kl.numel()
    return total / max(count, 1)


# ---------------------------------------------------------------- summaries

def aggregate(lines: list[LineScore]) -> dict:
    """nll per token (token-weighted), exact-match share of lines, and how many of each."""
    tokens = sum(s.tokens for s in lines)
    return {"nll": sum(s.nll for s in lines) / tokens if tokens else None,
            "exact": sum(s.exact for s in lines) / len(lines) if lines else None,
            "lines": len(lines), "tokens": tokens}


def internalization(base: float | None, ceiling: float | None, adapter: float | None) -> float | None:
    """(adapter − base) / (ceiling − base), as for probes (evaluate.internalization)."""
    from learnagent.learning.evaluate import internalization as ratio

    return ratio(base, ceiling, adapter)


@dataclass
class BehaviourReport:
    variants: dict[str, dict]  # variant -> aggregate over every measured line
    by_origin: dict[str, dict[str, dict]]  # origin ("file", "episode") -> variant -> aggregate
    internalization: dict[str, float | None]  # metric -> ratio (adapter vs base, ceiling = context)
    documents: int
    config: dict = field(default_factory=dict)
    code_drift: float | None = None  # the adapter's KL to the base on unrelated code (code_drift)

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(scores: dict[str, list[LineScore]], *, adapter: str = "adapter", base: str = "base",
              ceiling: str = "context", config: MeasureConfig | None = None) -> BehaviourReport:
    variants = {name: aggregate(lines) for name, lines in scores.items()}
    origins = sorted({s.origin for lines in scores.values() for s in lines})
    by_origin = {o: {name: aggregate([s for s in lines if s.origin == o]) for name, lines in scores.items()}
                 for o in origins}
    ratios = {m: internalization(variants.get(base, {}).get(m), variants.get(ceiling, {}).get(m),
                                 variants.get(adapter, {}).get(m)) for m in METRICS}
    docs = len({s.doc for lines in scores.values() for s in lines})
    return BehaviourReport(variants, by_origin, ratios, docs, asdict(config or MeasureConfig()))


def measure(model, tokenizer, corpus, *, adapter: str | None, docs=None, with_context: bool = True,
            config: MeasureConfig | None = None, progress=None) -> tuple[BehaviourReport, dict]:
    """base, base + retrieved context (unless `with_context` is False) and base + `adapter` (when one
    is loaded) on the corpus's held-out documents (or `docs`): the report and the per-line scores."""
    variants = [Variant("base")] + ([Variant("context", context=True)] if with_context else []) + \
        ([Variant("adapter", adapter)] if adapter else [])
    scores = score(model, tokenizer, corpus, corpus.heldout if docs is None else docs, variants, config=config,
                   progress=progress)
    report = summarize(scores, config=config)
    if adapter:
        report.code_drift = code_drift(model, tokenizer, adapter)
    return report, scores
