"""The behavioural measure: lines -> tokens, teacher-forced NLL and greedy exact match against plain
forwards and real greedy decoding, on a tiny model taught the convention repository's code."""

import math

import pytest
import torch

from code_repo import make_code_repo
from learnagent.learning import behaviour
from learnagent.learning.behaviour import LineScore, MeasureConfig, Variant, aggregate, summarize
from learnagent.learning.code_pairs import CodeDoc, mine_code

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRACTION = 0.3


def test_line_exact_against_hand_made_tokens():
    texts = {1: "def", 2: " f", 3: "():", 4: "\n", 5: "\n   ", 6: " g", 7: " #", 8: "):\n"}
    exact = lambda true, arg: behaviour._line_exact(true, arg, texts.__getitem__)  # noqa: E731
    assert exact([1, 2, 3, 4], [1, 2, 3, 4])
    assert exact([1, 2, 3, 4], [1, 2, 3, 5])  # it ends the line too; the next line's indentation is not this line's
    assert not exact([1, 2, 3, 4], [1, 2, 3, 7])  # it would go on writing this line
    assert not exact([1, 2, 3, 4], [1, 6, 3, 4])  # a wrong token inside the line
    assert exact([1, 2, 8], [1, 2, 8]) and not exact([1, 2, 8], [1, 2, 4])  # "):\n" ends the line after "):"
    assert exact([1, 2], [1, 2]) and not exact([1, 2], [1, 3])  # the file's last line, no newline


def test_aggregate_and_summary_against_hand_computed_values():
    def line(nll, tokens, exact, origin="file"):
        return LineScore("d", origin, 2, tokens, nll, exact)

    scores = {"base": [line(4.0, 2, False), line(2.0, 2, True, "episode")],
              "context": [line(1.0, 2, True), line(1.0, 2, True, "episode")],
              "adapter": [line(2.0, 2, True), line(2.0, 2, False, "episode")]}
    assert aggregate(scores["base"]) == {"nll": 1.5, "exact": 0.5, "lines": 2, "tokens": 4}
    report = summarize(scores)
    # nll: base 1.5, ceiling 0.5, adapter 1.0 -> half way; exact: base 0.5, ceiling 1.0, adapter 0.5 -> 0
    assert report.internalization == {"nll": pytest.approx(0.5), "exact": pytest.approx(0.0)}
    assert report.by_origin["episode"]["adapter"] == {"nll": 1.0, "exact": 0.0, "lines": 1, "tokens": 2}
    assert summarize({"base": scores["base"]}).internalization == {"nll": None, "exact": None}


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """A tiny model (its tokenizer trained on the repository too) fully fine-tuned on the TRAINING
    files: it writes the house style, more or less; and the same model untaught."""
    from tiny_model import make_tiny_model, make_tokenizer, teach

    root = make_code_repo(tmp_path_factory.mktemp("behaviour") / "repo")
    corpus = mine_code(root, heldout_fraction=FRACTION)
    tok = make_tokenizer(1024, corpus=list(corpus.files.values()))
    model, _ = make_tiny_model(tok)
    raw, _ = make_tiny_model(tok)
    files = [tok(d.text)["input_ids"] for d in corpus.train if d.origin == "file" and d.text]
    teach(model, tok, [(ids[:1], ids[1:]) for ids in files], steps=60, batch=len(files), lr=3e-3)
    model.eval()
    return model, tok, corpus, raw.eval()


def _reference(model, tok, corpus, doc: CodeDoc, context: bool):
    """Per line (nll sum, greedy exact) from one plain forward per line: the code before and the line."""
    d, = behaviour.prepare(tok, [doc])
    out = []
    for offset, _number, first, end in d.lines:
        prefix = []
        if context:
            block, rest = corpus.conventions_block, corpus.context(doc, offset)[0][len(corpus.conventions_block) + 2:]
            prefix = tok(block + "\n\n")["input_ids"] + (tok(rest + "\n\n")["input_ids"] if rest else [])
        ids = torch.tensor([prefix + d.ids[:end]])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
        positions = range(len(prefix) + first - 1, len(prefix) + end - 1)
        nll = -sum(float(logp[p, ids[0, p + 1]]) for p in positions)
        arg = [int(logp[p].argmax()) for p in positions]
        out.append((nll, behaviour._line_exact(d.ids[first:end], arg, lambda i: tok.decode([i]))))
    return out


def test_one_pass_per_document_equals_a_forward_per_line(taught):
    model, tok, corpus, raw = taught
    docs = corpus.heldout[:2]
    variants = [Variant("base"), Variant("context", context=True)]
    batched = behaviour.score(model, tok, corpus, docs, variants)
    chunked = behaviour.score(model, tok, corpus, docs, variants,
                              config=MeasureConfig(chunk_tokens=37, batch_tokens=1))  # no batch; many chunks
    for name, context in (("base", False), ("context", True)):
        ref = [r for doc in sorted(docs, key=lambda d: [s.doc for s in batched[name]].index(d.key))
               for r in _reference(model, tok, corpus, doc, context)]
        assert len(ref) == len(batched[name]) == len(chunked[name]) > 5
        for (nll, exact), b, c in zip(ref, batched[name], chunked[name]):
            assert b.nll == pytest.approx(nll, rel=1e-4, abs=1e-3) and c.nll == pytest.approx(nll, rel=1e-4, abs=1e-3)
            assert b.exact == c.exact == exact


def test_exact_match_is_what_greedy_decoding_writes(taught):
    from learnagent.learning.rollout import sample

    model, tok, corpus, raw = taught
    docs = [d for d in corpus.heldout if d.path != "shop/errors.py"][:2]  # two modules in the house style
    scores = behaviour.score(model, tok, corpus, docs, [Variant("base")])["base"]
    by_line = {(s.doc, s.line): s.exact for s in scores}
    checked = hits = 0
    for d in behaviour.prepare(tok, docs):
        for _offset, number, first, end in d.lines:
            prompt = torch.tensor([d.ids[:first]])
            written = tok.decode(sample(model, tok, prompt, 1, 2 * (end - first) + 4, temperature=0)[0])
            true = tok.decode(d.ids[first:end])
            greedy_exact = written.split("\n", 1)[0] == true.split("\n", 1)[0] and "\n" in written
            assert by_line[(d.doc.key, number)] == greedy_exact, (true, written)
            checked, hits = checked + 1, hits + greedy_exact
    assert checked > 20 and 0 < hits < checked  # the taught model writes some held-out lines, not all


def test_the_taught_model_writes_held_out_code_better_than_the_raw_one(taught):
    from peft import LoraConfig, get_peft_model

    model, tok, corpus, raw = taught
    raw_scores = behaviour.aggregate(behaviour.score(raw, tok, corpus, corpus.heldout, [Variant("base")])["base"])
    taught_scores = behaviour.aggregate(behaviour.score(model, tok, corpus, corpus.heldout, [Variant("base")])["base"])
    assert raw_scores["lines"] == taught_scores["lines"] > 20
    assert taught_scores["nll"] < 0.7 * raw_scores["nll"] and taught_scores["exact"] > raw_scores["exact"] + 0.1
    # a zero LoRA (the state a fresh adapter starts in) is the base model, line for line
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"), adapter_name="zero")
    both = behaviour.score(pm, tok, corpus, corpus.heldout, [Variant("base"), Variant("zero", "zero")])
    assert [s.nll for s in both["zero"]] == pytest.approx([s.nll for s in both["base"]])
    assert [s.exact for s in both["zero"]] == [s.exact for s in both["base"]]
    report, _ = behaviour.measure(pm, tok, corpus, adapter="zero")
    assert report.internalization["nll"] == pytest.approx(0.0, abs=1e-6)
    assert report.variants["context"]["nll"] != report.variants["base"]["nll"]
    assert not math.isnan(report.variants["base"]["nll"]) and report.documents == len(corpus.heldout)
    pm.unload()


def test_the_budget_keeps_a_stable_subset_of_documents(taught):
    model, tok, corpus, raw = taught
    everything = behaviour.prepare(tok, corpus.heldout)
    some = behaviour.prepare(tok, corpus.heldout, MeasureConfig(max_tokens=everything[0].end + 1))
    assert [d.doc.key for d in some] == [everything[0].doc.key]  # the first in hash order, not in file order
    assert [d.doc.key for d in behaviour.prepare(tok, list(reversed(corpus.heldout)))] == \
        [d.doc.key for d in everything]
