"""`learnagent review`: flag staged lines that go against the repository's learned conventions.

The repo adapter was trained on this repository's accepted work, so it has learned what code
here usually looks like. For each staged added line we compute its surprise (mean negative
log-probability per token, in nats) twice, with the adapter and with the plain base model, on
the same text with the same preceding context. A line the adapter finds much MORE surprising
than the base model does is ordinary code in general but unusual for this repository: that
difference (adapter - base) above `margin` marks the line as off-convention. Comparing against
the base cancels what is simply hard to predict anywhere (fresh names, numbers, long strings).

With no promoted adapter (or a model that is not local) it prints one line and succeeds. It
only ever blocks a commit with `strict=True` and at least one flagged line; its own failures
(a model that will not load) are reported and never block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from learnagent.core.repository import Repository
from learnagent.store import gitutil
from learnagent.store.attribution import parse_diff

DEFAULT_MARGIN = 1.0  # nats/token by which the adapter's surprise must exceed the base's
CONTEXT_LINES = 20  # lines of the staged file before a block, given to the model as context
MAX_BLOCK_TOKENS = 1024


@dataclass
class LineScore:
    path: str
    line_no: int
    text: str
    base_nll: float
    adapter_nll: float

    @property
    def delta(self) -> float:
        return self.adapter_nll - self.base_nll


def staged_blocks(root: Path, files: list[str] | None = None) -> list[tuple[str, int, list[str]]]:
    """(path, first line number, lines) of each block of added lines in the index."""
    args = ["diff", "--cached", "-U0", *gitutil.DIFF_FLAGS]
    if files:
        args += ["--", *files]
    blocks = []
    for fp in parse_diff(gitutil.git(root, *args)):
        if fp.binary or not fp.new_path:
            continue
        for h in fp.hunks:
            added = [t for tag, t in h.lines if tag == "+"]
            if added and any(x.strip() for x in added):
                blocks.append((fp.new_path, h.new_start, added))
    return blocks


def find_adapter(repo: Repository):
    """(version, folder) of the promoted repo adapter, or None (also when the registry is absent)."""
    try:
        from learnagent.learning.registry import promoted_adapter
    except ImportError:
        return None
    return promoted_adapter(repo)


def _line_nll(model, tokenizer, context: str, lines: list[str]) -> list[float]:
    """Mean NLL per token of each line of `lines`, after `context`."""
    import torch

    block = "\n".join(lines) + "\n"
    text = context + block
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if len(ids) > MAX_BLOCK_TOKENS:  # keep the end: the block, with as much context as fits
        ids, offsets = ids[-MAX_BLOCK_TOKENS:], offsets[-MAX_BLOCK_TOKENS:]
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, torch.tensor(ids[1:], device=device).unsqueeze(1)).squeeze(1).cpu()
    starts, pos = [], len(context)
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    sums, counts = [0.0] * len(lines), [0] * len(lines)
    for k in range(1, len(ids)):  # token k is predicted from tokens < k
        begin = offsets[k][0]
        if begin < len(context):
            continue
        idx = max(i for i, s in enumerate(starts) if s <= begin)
        sums[idx] += float(nll[k - 1])
        counts[idx] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts)]


def score(root: Path, model, tokenizer, blocks) -> list[LineScore]:
    """Score each staged block with the adapter on, then off (`PeftModel.disable_adapter`)."""
    out: list[LineScore] = []
    for path, start, lines in blocks:
        staged = gitutil.git(root, "show", f":{path}", check=False).splitlines()
        context = "\n".join(staged[max(0, start - 1 - CONTEXT_LINES):start - 1])
        context = context + "\n" if context else ""
        with_adapter = _line_nll(model, tokenizer, context, lines)
        with model.disable_adapter():
            base = _line_nll(model, tokenizer, context, lines)
        for i, line in enumerate(lines):
            if line.strip():
                out.append(LineScore(path, start + i, line, base[i], with_adapter[i]))
    return out


def load_with_adapter(model_target: str, adapter_path: Path):
    """The base model with the repository adapter (checked: complete, trained on this base), placed
    by the runtime's policy like the model `do` runs (runtime/loading.py)."""
    from learnagent.runtime.loading import load_with_adapters

    return load_with_adapters(model_target, {Path(adapter_path).name: Path(adapter_path)})


def review(repo: Repository, files: list[str] | None = None, *, strict: bool = False, margin: float = DEFAULT_MARGIN,
           say: Callable[[str], None] = print) -> int:
    """Print the off-convention staged lines; the exit code (1 only when strict and something is flagged)."""
    root = repo.work_tree
    blocks = staged_blocks(root, files)
    if not blocks:
        say("learnagent review: nothing staged to review")
        return 0
    adapter = find_adapter(repo)
    if adapter is None:
        say("learnagent review: no repo adapter yet (run `learnagent sleep`); nothing to check against")
        return 0
    version, folder = adapter
    try:
        from learnagent.core.config import load_config
        from learnagent.core.modelhub import resolve_model

        backend, target = resolve_model(load_config(root).model.name)
        if backend != "local":
            say(f"learnagent review: the configured model is not local ({backend}); skipped")
            return 0
        model, tokenizer = load_with_adapter(target, folder)
        scores = score(root, model, tokenizer, blocks)
    except Exception as exc:  # a review that cannot run must not block the commit
        say(f"learnagent review: skipped ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return 0
    flagged = [s for s in scores if s.delta > margin]
    for s in flagged:
        say(f"{s.path}:{s.line_no}: off-convention ({s.delta:+.2f} nats/token with adapter {version}: "
            f"{s.adapter_nll:.2f} vs base {s.base_nll:.2f}): {s.text.strip()}")
    say(f"learnagent review: {len(flagged)} of {len(scores)} staged lines look unusual for this repository"
        f" (adapter {version}, margin {margin:g})")
    return 1 if strict and flagged else 0
