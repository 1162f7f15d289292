"""The llama.cpp engine (optional extra `learnagent[llama]`) against transformers on the same tiny model.

Round trip: the tiny model written as an F32 GGUF (tests/tiny_gguf.py), a PEFT LoRA exported to a
GGUF LoRA (runtime/gguf_lora.py); llama.cpp with that LoRA must produce the same greedy tokens as
transformers + PEFT. Tolerance: identical tokens for the whole reply (F32 on both sides; the two
engines' logits differ by float rounding only, far below the random model's gaps between its top
two tokens; a near tie would show up as a first differing token, reported by the assertion).

Skipped where llama-cpp-python is not installed, except when LEARNAGENT_REQUIRE_LLAMA=1 (CI sets it:
`scripts/setup.sh` installs the extra there), so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("LEARNAGENT_REQUIRE_LLAMA") != "1":
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (learnagent[llama]) is not installed")

CHAT = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Fix the bug in add()."}]


@pytest.fixture(scope="module")
def gguf_model_dir(tmp_path_factory):
    """A model folder as `learnagent model install` leaves it: transformers weights + its GGUF + marker."""
    from tiny_gguf import make_gguf_model_dir

    return make_gguf_model_dir(tmp_path_factory.mktemp("tinyg") / "model", seed=5)


@pytest.fixture(scope="module")
def adapter_dir(gguf_model_dir, tmp_path_factory):
    from tiny_model import make_adapter

    return make_adapter(gguf_model_dir, tmp_path_factory.mktemp("ad") / "v0001", seed=2)


def first_difference(a: str, b: str) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at char {i}: {a[i:i + 20]!r} vs {b[i:i + 20]!r}"


def test_engine_is_chosen_when_installed_and_the_folder_has_its_gguf(gguf_model_dir, tiny_model_dir):
    from learnagent.core.errors import UsageError
    from learnagent.runtime.engines import choose_engine

    assert choose_engine(gguf_model_dir, "auto") == "llama.cpp"
    assert choose_engine(gguf_model_dir, "transformers") == "transformers"
    assert choose_engine(tiny_model_dir, "auto") == "transformers"  # no GGUF: transformers
    with pytest.raises(UsageError, match="has none"):
        choose_engine(tiny_model_dir, "llama.cpp")


def test_base_model_gives_the_same_greedy_tokens_as_transformers(gguf_model_dir):
    from learnagent.runtime.engine_hf import TransformersModel
    from learnagent.runtime.engine_llamacpp import LlamaCppModel

    hf = TransformersModel(gguf_model_dir, device="cpu").complete(CHAT, max_tokens=24)
    cpp = LlamaCppModel(gguf_model_dir, n_threads=1).complete(CHAT, max_tokens=24)
    assert cpp.prompt_tokens == hf.prompt_tokens and cpp.completion_tokens == hf.completion_tokens
    assert cpp.text == hf.text, first_difference(cpp.text, hf.text)
    assert cpp.extra["engine"] == "llama.cpp" and cpp.extra["adapter"] is None


def test_peft_to_gguf_lora_round_trip_gives_the_same_greedy_tokens(gguf_model_dir, adapter_dir):
    from learnagent.runtime.engine_hf import TransformersModel
    from learnagent.runtime.engine_llamacpp import LlamaCppModel

    hf_base = TransformersModel(gguf_model_dir, device="cpu").complete(CHAT, max_tokens=24)
    hf = TransformersModel(gguf_model_dir, adapter_path=adapter_dir, device="cpu").complete(CHAT, max_tokens=24)
    cpp = LlamaCppModel(gguf_model_dir, adapter_path=adapter_dir, n_threads=1).complete(CHAT, max_tokens=24)
    assert hf.text != hf_base.text  # the adapter changes the answer...
    assert cpp.text == hf.text, first_difference(cpp.text, hf.text)  # ...in llama.cpp exactly as in PEFT
    assert (cpp.extra["adapter"], cpp.extra["lora"]) == ("v0001", "adapter.gguf")
    assert (adapter_dir / "adapter.gguf").is_file()  # exported next to the PEFT weights on first use


def test_llamacpp_stops_after_one_action(gguf_model_dir):
    from learnagent.agent.actions import parse_action, reply_format
    from learnagent.runtime.engine_llamacpp import LlamaCppModel
    from learnagent.runtime.model import ReplyFormat

    two = 'start: "<run>ls</run>" "\\n<finish>and more text after the action</finish>"'
    fmt = reply_format()
    model = LlamaCppModel(gguf_model_dir, n_threads=1, reply_format=ReplyFormat(reply_end=fmt.reply_end, grammar=two))
    out = model.complete(CHAT, max_tokens=60)
    assert out.text == "<run>ls</run>" and out.extra["stop_reason"] == "reply_complete"
    assert parse_action(out.text).body == "ls" and out.extra["grammar"] == "llguidance"


EMBEDDED_WITH_LORA = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from learnagent.core.modelhub import installed_default_path
from learnagent.runtime.engine_llamacpp import LlamaCppModel
from tiny_model import make_adapter
path = installed_default_path()
chat = [{"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"}]
base = LlamaCppModel(path, n_threads=2, constrain=False).complete(chat, max_tokens=16)
lora = make_adapter(path, Path(sys.argv[2]) / "v0001", std=0.3, r=8, lora_alpha=16,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
tuned = LlamaCppModel(path, adapter_path=lora, n_threads=2, constrain=False).complete(chat, max_tokens=16)
print(repr(base.text)); print(repr(tuned.text))
assert "Paris" in base.text, base.text
assert tuned.text != base.text and tuned.extra["lora"] == "adapter.gguf"
"""


@pytest.mark.slow
def test_embedded_q4_1_gguf_runs_with_an_exported_lora(tmp_path):
    """The embedded model's original Q4_1 GGUF in llama.cpp, bare and with a GGUF LoRA exported from
    PEFT (a large random one, so that it must change the reply). In a child process: a llama.cpp
    built for instructions this CPU lacks dies with SIGILL (as the first native build here did)."""
    import subprocess
    import sys
    from pathlib import Path

    from learnagent.core.modelhub import installed_default_path

    if installed_default_path() is None:
        pytest.skip("the default model is not installed: run `learnagent model install`")
    tests = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", EMBEDDED_WITH_LORA, str(tests), str(tmp_path)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode} (-4: SIGILL):\n{out.stdout}\n{out.stderr[-2000:]}"
