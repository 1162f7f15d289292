"""The learning claim, small enough for CI: on SmolLM2-135M, sleep's default method trained on the
convention repository's own code makes the model WITHOUT context write the repository's
conventions on held-out modules it never saw, clearly more often than the base model does.

The full claim (the adapter without context at least as good as the base model WITH the context,
drift, TRL SDFT and SFT side by side) is measured by bench/bench_learning.py
(docs/benchmarks/learning.md); this test holds a smaller version of it so it cannot regress.
Data: bench/convention_repo.py (12 held-out modules never committed, 48 raw-text probes that start
them); pairs: bench/learning_data.py; probes scored greedy by bench/learning_eval.py.
"""

import sys
from pathlib import Path

import pytest

from learnagent.core.modelhub import installed_default_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

STEPS = 40  # docs/OPSD.md: the default reached 10/48 probes after 36 steps (3 CPU-minutes), base 0/48


@pytest.mark.skipif(installed_default_path() is None, reason="SmolLM2 not installed (run `learnagent model install`)")
def test_default_method_writes_the_conventions_on_heldout_modules_without_context(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import convention_repo as cr
    import learning_data
    import learning_eval
    from learnagent.learning.opsd import train_opsd
    from learnagent.learning.train_common import TrainConfig

    path = str(installed_default_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    probes = cr.probes()
    before = learning_eval.probe_scores(model.eval(), tok, probes, "base", None)
    assert before["hits"] <= 2, f"the base model already follows the conventions: {before['by_check']}"

    pairs = learning_data.code_pairs()  # the training modules only: no probe's module is among them
    assert not {p.episode_id.split("@")[0] for p in pairs} & set(cr.HELDOUT_MODULES)
    config = TrainConfig(steps=STEPS, seed=0, low_priority=False, checkpoint_every=0, device="cpu", dtype="float32")
    result = train_opsd((model, tok), pairs, None, prev_adapter=None, out_dir=tmp_path / "adapter", config=config,
                        progress=False)
    assert result.steps == STEPS
    # the saved adapter on a fresh base, as `do` loads it
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(result.adapter_dir), adapter_name="repo").eval()
    after = learning_eval.probe_scores(adapted, tok, probes, "adapter", "repo")
    print("probes without context: base", before["by_check"], "adapter", after["by_check"])
    # 6 of 48 against at most 2: far outside greedy noise (the base model writes none of the four)
    assert after["hits"] >= before["hits"] + 6, (
        f"adapter {after['hits']}/48 vs base {before['hits']}/48 on held-out probes: {after['by_check']}")
