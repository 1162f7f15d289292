"""What the model writes, measured for bench/bench_learning.py on the convention repository.

Local to the bench until learning/behaviour.py (learn-measure) lands; every number is about
behaviour on code nothing trained on:

- probes: the 48 raw-text starts of held-out modules (convention_repo.probes()), greedy,
  scored by each probe's regex: base (no context), context (base reading the conventions and
  an example module: the ceiling), adapter (no context);
- next line: on the 12 held-out modules, the share of lines that greedy decoding would write
  exactly, given the true code before them, and the per-token NLL of the module. Both come
  from ONE teacher-forced forward per module: greedy decoding reproduces a line iff the argmax
  at each of its tokens (and at the token that ends it) is the true token. The context variant
  reads the conventions and the most similar training module (identifier overlap) first;
- general: greedy completions of unrelated raw-text code starts (convention_repo.
  GENERAL_TEXT_PROMPTS): how many show a repository name (REPO_NAMES), and drift = KL(adapter ||
  base) per token on the adapter's own samples, for those and for the chat GENERAL_PROMPTS.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

import convention_repo as cr
from learnagent.learning import rollout


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]{3,}", text))


def retrieved_context(source: str, train: dict[str, str], k: int = 1) -> str:
    """Conventions + the k training modules sharing the most identifiers with `source` (Jaccard)."""
    ids = _identifiers(source)
    ranked = sorted(train, key=lambda p: -len(ids & _identifiers(train[p])) / len(ids | _identifiers(train[p])))
    files = "".join(f"\n{cr.path_header(p)}{train[p]}" for p in ranked[:k])
    return f"{cr.path_header('CONVENTIONS.md')}{cr.CONVENTIONS}{files}".rstrip("\n")


@torch.no_grad()
def greedy(model, tokenizer, texts: list[str], adapter: str | None, max_new_tokens: int = 40,
           batch: int = 8) -> list[str]:
    """Greedy continuations of raw texts (left-padded batches through HF generate)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    results = {}
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        with rollout.adapter_context(model, adapter):
            gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        for row, i in enumerate(idx):
            results[i] = tokenizer.decode(gen[row, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    out = [results[i] for i in range(len(texts))]
    return out


# New tokens each check needs to show its convention (the logger: the three import lines).
PROBE_TOKENS = {"logger": 32, "audited": 40, "error": 8, "cents": 10}


def probe_scores(model, tokenizer, probes: list[dict], variant: str, adapter: str | None) -> dict:
    texts = [rollout.text_with_context(p["prompt"], p["context"] if variant == "context" else None) for p in probes]
    outs = [""] * len(probes)
    for check, budget in PROBE_TOKENS.items():
        idx = [i for i, p in enumerate(probes) if p["id"].endswith("-" + check)]
        for i, out in zip(idx, greedy(model, tokenizer, [texts[i] for i in idx], adapter, max_new_tokens=budget)):
            outs[i] = out
    hits = {p["id"]: bool(re.search(p["expect"], o, re.M)) for p, o in zip(probes, outs)}
    by_check = {}
    for p in probes:
        check = p["id"].split("-", 1)[1]
        by_check.setdefault(check, []).append(hits[p["id"]])
    return {"hits": sum(hits.values()), "n": len(hits), "by_check": {c: sum(v) for c, v in by_check.items()},
            "completions": dict(zip([p["id"] for p in probes], outs))}


@torch.no_grad()
def next_line(model, tokenizer, modules: dict[str, str], contexts: dict[str, str] | None,
              adapter: str | None) -> dict:
    """Greedy next-line exact match and per-token NLL over `modules`, teacher-forced (see module doc)."""
    exact = lines = 0
    nll_sum, nll_n = 0.0, 0
    for path, source in modules.items():
        context = contexts[path] if contexts else None
        source = cr.path_header(path) + source  # as the probes and the training pairs read a file
        text = rollout.text_with_context(source, context)
        offset = len(text) - len(source)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = torch.tensor([enc["input_ids"]])
        starts = [s for s, _e in enc["offset_mapping"]]
        with rollout.adapter_context(model, adapter):
            logits = model(input_ids=ids).logits[0].float()
        logp = logits.log_softmax(-1)
        pred = logits.argmax(-1)
        ok = torch.zeros(len(starts), dtype=torch.bool)
        ok[1:] = pred[:-1] == ids[0, 1:]
        src_tokens = [j for j, s in enumerate(starts) if s >= offset and j >= 1]
        nll_sum += float(-logp[[j - 1 for j in src_tokens], ids[0, src_tokens]].sum())
        nll_n += len(src_tokens)
        pos = offset
        for number, line in enumerate(source.split("\n")):
            a, b = pos, pos + len(line)
            pos = b + 1
            if number == 0 or not line.strip():
                continue  # the path header is given; blank lines carry no convention
            toks = [j for j, s in enumerate(starts) if a <= s <= b]
            if not toks or toks[0] == 0:
                continue
            lines += 1
            exact += bool(ok[toks].all())
    return {"exact": exact, "lines": lines, "exact_rate": exact / max(lines, 1), "nll": nll_sum / max(nll_n, 1)}


def general_checks(model, tokenizer, adapter: str | None, drift_samples_tokens: int = 32) -> dict:
    outs = greedy(model, tokenizer, cr.GENERAL_TEXT_PROMPTS, adapter, max_new_tokens=48)
    leaked = [i for i, o in enumerate(outs) if re.search(cr.REPO_NAMES, o)]
    result = {"leaks": len(leaked), "n": len(outs), "leaked_completions": [outs[i] for i in leaked]}
    if adapter is not None:
        result["drift_chat"] = rollout.drift(model, tokenizer, rollout.GENERAL_PROMPTS, adapter=adapter,
                                             max_new_tokens=drift_samples_tokens, seed=0)
        result["drift_text"] = rollout.drift(model, tokenizer, cr.GENERAL_TEXT_PROMPTS, adapter=adapter,
                                             max_new_tokens=drift_samples_tokens, seed=0)
    else:
        result["drift_chat"] = result["drift_text"] = 0.0
    return result


def evaluate_variant(model, tokenizer, variant: str, adapter: str | None = None, *, probes=None,
                     heldout=None, train=None, general: bool = True) -> dict:
    """All measures for one variant: 'base', 'context', or an adapter name (no context)."""
    started = time.perf_counter()
    probes = probes if probes is not None else cr.probes()
    heldout = heldout if heldout is not None else cr.HELDOUT_MODULES
    train = train if train is not None else cr.TRAIN_MODULES
    contexts = {p: retrieved_context(s, train) for p, s in heldout.items()} if variant == "context" else None
    out = {"probes": probe_scores(model, tokenizer, probes, variant, adapter),
           "next_line": next_line(model, tokenizer, heldout, contexts, adapter)}
    if general and variant != "context":
        out["general"] = general_checks(model, tokenizer, adapter)
    out["seconds"] = time.perf_counter() - started
    return out


def summary(row: dict) -> str:
    p, n = row["probes"], row["next_line"]
    g = row.get("general") or {}
    return (f"probes {p['hits']}/{p['n']} {p['by_check']} | next-line {n['exact']}/{n['lines']} nll {n['nll']:.3f}"
            + (f" | leaks {g['leaks']}/{g['n']} drift chat {g['drift_chat']:.3f} text {g['drift_text']:.3f}"
               if g else "") + f" | {row['seconds']:.0f}s")


if __name__ == "__main__":  # the base model's two rows (pilot)
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learnagent.core.modelhub import installed_default_path

    torch.set_num_threads(1)
    path = installed_default_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    for v in sys.argv[1:] or ["base", "context"]:
        row = evaluate_variant(model, tok, v)
        print(v, summary(row), flush=True)
        for pid, c in list(row["probes"]["completions"].items())[:8]:
            print("   ", pid, repr(c[:100]))
