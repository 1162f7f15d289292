"""Eval metrics: probe parsing, hand-computed ratios, and the variants on the tiny model."""

import json
import math

import pytest

from learnagent.core.errors import UsageError
from learnagent.learning import evaluate, rollout
from learnagent.learning.evaluate import Probe, adherence, internalization, load_probes, summarize
from learnagent.runtime.loading import load_with_adapters

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_internalization_against_hand_computed_values():
    assert internalization(0.2, 0.8, 0.5) == pytest.approx(0.5)  # adherence: half way to the ceiling
    assert internalization(2.0, 0.0, 0.5) == pytest.approx(0.75)  # gap: 1.5 of 2.0 closed
    assert internalization(2.0, 0.0, 2.5) == pytest.approx(-0.25)  # worse than base
    assert internalization(0.3, 0.3, 0.9) is None  # the context changes nothing: no ratio
    assert internalization(None, 0.8, 0.5) is None
    assert internalization(0.1, 0.9, math.nan) is None


def test_adherence_aggregates_over_completions_of_probes_with_a_regex():
    assert adherence([[True, False], [], [True, True]]) == pytest.approx(3 / 4)
    assert adherence([[], []]) is None


def test_summarize_builds_both_ratios():
    variants = {"base": {"adherence": 0.25, "gap": 1.2}, "context": {"adherence": 0.75, "gap": 0.0},
                "adapter": {"adherence": 0.5, "gap": 0.3}}
    assert summarize(variants) == {"adherence": pytest.approx(0.5), "gap": pytest.approx(0.75)}
    assert summarize({"base": variants["base"], "context": variants["context"]}) == {"adherence": None, "gap": None}


def write(tmp_path, lines):
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_probes(tmp_path):
    path = write(tmp_path, [json.dumps({"id": "a", "prompt": "p", "context": "c", "expect": "x+"}), "",
                            json.dumps({"id": "b", "prompt": "q", "context": "d"})])
    probes = load_probes(path)
    assert [p.id for p in probes] == ["a", "b"]
    assert probes[0].prompt == [{"role": "user", "content": "p"}]
    assert probes[0].matches("axxb") and not probes[0].matches("abc")
    assert probes[1].expect is None and not probes[1].matches("anything")


def test_load_probes_in_both_forms(tmp_path):
    path = write(tmp_path, [json.dumps({"id": "t", "prompt": "import os\n", "context": "c", "mode": "text"}),
                            json.dumps({"id": "c", "prompt": "p", "context": "c", "mode": "chat"})])
    text, chat = load_probes(path)
    assert text.mode == "text" and text.prompt == "import os\n"
    assert chat.mode == "chat" and chat.prompt == [{"role": "user", "content": "p"}]


@pytest.mark.parametrize("line, message", [
    ('{"id": "b", "prompt": "p", "context": "c", "mode": "raw"}', r"probes.jsonl:2: 'mode' must be \"chat\" or \"text\""),
    ("{not json", r"probes.jsonl:2: not valid JSON"),
    ('["a"]', r"probes.jsonl:2: expected a JSON object"),
    ('{"id": "b", "prompt": "", "context": "c"}', r"probes.jsonl:2: 'prompt' must be a non-empty string"),
    ('{"id": "b", "prompt": "p"}', r"probes.jsonl:2: 'context' must be"),
    ('{"id": "b", "prompt": "p", "context": "c", "expect": "(unclosed"}', r"probes.jsonl:2: 'expect' is not a valid"),
    ('{"id": "a", "prompt": "p", "context": "c"}', r"probes.jsonl:2: duplicate probe id 'a'"),
])
def test_bad_probe_lines_name_the_line(tmp_path, line, message):
    path = write(tmp_path, [json.dumps({"id": "a", "prompt": "p", "context": "c"}), line])
    with pytest.raises(UsageError, match=message):
        load_probes(path)


def test_empty_or_missing_probe_file(tmp_path):
    with pytest.raises(UsageError, match="no probes"):
        load_probes(write(tmp_path, [""]))
    with pytest.raises(UsageError, match="cannot read probe file"):
        load_probes(tmp_path / "nope.jsonl")


@pytest.fixture(scope="module")
def tiny_with_adapters(tiny_model_dir, tmp_path_factory):
    """The tiny model with two saved LoRAs: 'zero' (B = 0: exactly the base) and 'moved' (random B)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = {}
    for name, fill in (("zero", None), ("moved", 0.5)):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        if fill is not None:
            torch.manual_seed(1)
            with torch.no_grad():
                for n, p in peft_model.named_parameters():
                    if "lora_B" in n:
                        p.normal_(0, fill)
        folders[name] = tmp_path_factory.mktemp(name)
        peft_model.save_pretrained(folders[name])
    return load_with_adapters(tiny_model_dir, folders)


PROBES = [Probe("any", [{"role": "user", "content": "def add(a, b):"}], "Use snake_case names and type hints.",
                r"[\s\S]*"),
          Probe("never", [{"role": "user", "content": "import os"}], "print('hello world')", r"(?!)"),
          Probe("nogex", [{"role": "user", "content": "class Store:"}], "self.path = path", None)]


def test_variants_on_tiny_model_are_consistent(tiny_with_adapters):
    model, tok = tiny_with_adapters
    out = evaluate.evaluate(model, tok, PROBES, adapter="zero", samples=2, max_new_tokens=8)
    v = out["variants"]
    # "any" always matches, "never" never does, "nogex" is not counted: 2 of 4 completions everywhere
    assert [v[k]["adherence"] for k in ("base", "context", "adapter")] == [0.5, 0.5, 0.5]
    assert out["per_probe"][0]["adherence"] == {"base": 1.0, "context": 1.0, "adapter": 1.0}
    assert out["internalization"]["adherence"] is None  # the context changes nothing on this metric
    assert v["context"]["gap"] == 0.0 and v["base"]["drift"] == 0.0
    direct = rollout.distillation_gap(model, tok, PROBES, student_adapter=None, teacher_adapter=None, samples=2,
                                      max_new_tokens=8, seed=0)
    assert v["base"]["gap"] == pytest.approx(direct) and direct > 0
    # a zero LoRA is the base model: same samples, same gap, no drift, nothing internalized
    assert v["adapter"]["gap"] == pytest.approx(v["base"]["gap"], rel=1e-4)
    assert v["adapter"]["drift"] == pytest.approx(0.0, abs=1e-5)
    assert out["internalization"]["gap"] == pytest.approx(0.0, abs=1e-4)


def test_a_moved_adapter_drifts(tiny_with_adapters):
    model, tok = tiny_with_adapters
    out = evaluate.evaluate(model, tok, PROBES[:1], adapter="moved", samples=1, max_new_tokens=6)
    assert out["variants"]["adapter"]["drift"] > 1e-3
    gap = out["variants"]
    expected = 1 - gap["adapter"]["gap"] / gap["base"]["gap"]  # (a - b) / (0 - b)
    assert out["internalization"]["gap"] == pytest.approx(expected)


def test_without_adapter_only_base_and_ceiling(tiny_model_dir):
    model, tok = load_with_adapters(tiny_model_dir, {})
    out = evaluate.evaluate(model, tok, PROBES[:1], adapter=None, samples=1, max_new_tokens=4)
    assert set(out["variants"]) == {"base", "context"}
    assert out["internalization"] == {"adherence": None, "gap": None}


TEXT_PROBES = [Probe("t-any", "def add(a, b):\n", "Use snake_case names and type hints.", r"[\s\S]*"),
               Probe("t-never", "import os\n", "print('hello world')", r"(?!)")]


def test_text_probes_are_raw_text_for_every_metric(tiny_with_adapters):
    from learnagent.learning.behaviour import GENERAL_CODE_STARTS
    from learnagent.learning.pairs import Pair

    model, tok = tiny_with_adapters
    assert evaluate.drift_prompts_for(TEXT_PROBES) == list(GENERAL_CODE_STARTS)
    assert evaluate.drift_prompts_for(PROBES[:1] + TEXT_PROBES) == list(rollout.GENERAL_PROMPTS) + \
        list(GENERAL_CODE_STARTS)
    out = evaluate.evaluate(model, tok, TEXT_PROBES, adapter="moved", samples=2, max_new_tokens=6)
    v = out["variants"]
    assert [v[k]["adherence"] for k in ("base", "context", "adapter")] == [0.5, 0.5, 0.5]
    # the gap is scored on raw text: the same number as the distillation gap of text-form pairs
    direct = rollout.distillation_gap(model, tok, [Pair(p.id, p.prompt, p.context, None) for p in TEXT_PROBES],
                                      student_adapter=None, teacher_adapter=None, samples=2, max_new_tokens=6)
    assert v["base"]["gap"] == pytest.approx(direct) and direct > 0
    chat_twin = [Probe(p.id, [{"role": "user", "content": p.prompt}], p.context, p.expect) for p in TEXT_PROBES]
    assert evaluate.evaluate(model, tok, chat_twin, adapter=None, samples=2, max_new_tokens=6)["variants"]["base"][
        "gap"] != pytest.approx(v["base"]["gap"])  # the chat form is another input
    # drift on raw starts of unrelated code, the adapter's own samples
    assert v["adapter"]["drift"] == pytest.approx(rollout.drift(model, tok, list(GENERAL_CODE_STARTS), adapter="moved"))
    assert v["adapter"]["drift"] > 1e-3
