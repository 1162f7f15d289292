"""Issue 12, one runtime for learning: training, the gate, `eval` and `review` load their models
through runtime/loading.py under the one device/dtype policy `do` uses (runtime/placement.py),
and every adapter they load is checked against the base it was trained on.

The policy is changed at its one decision point (`placement._dtype_name`: bf16 instead of fp32 on
this CPU) and every loader must follow it; an adapter stamped for another base is refused in one
line by each of them.
"""

import pytest
import torch

from learnagent.core.errors import LearnagentError
from learnagent.runtime import placement as placement_mod
from learnagent.runtime.identity import BaseIdentity, base_identity, stamp_adapter

from tiny_model import make_adapter


@pytest.fixture
def bf16_policy(monkeypatch):
    """The policy says bf16 (as on a CUDA card that does it natively)."""
    monkeypatch.setattr(placement_mod, "_dtype_name", lambda device: "bfloat16")


def _dtypes(model) -> set:
    """The base weights' dtypes (PEFT keeps a trainable LoRA in fp32 over a bf16 base, on purpose)."""
    return {p.dtype for n, p in model.named_parameters() if "lora_" not in n}


def _loaders(tiny_model_dir, adapter):
    """(name, load) for each way learning loads a model with `adapter`."""
    from learnagent.learning import convention_review
    from learnagent.learning.train_common import TrainConfig, load_student
    from learnagent.runtime.loading import load_with_adapters

    return [
        ("train (student + frozen teacher)",
         lambda: load_student(tiny_model_dir, adapter, TrainConfig(), with_teacher=True)[0]),
        ("gate / eval", lambda: load_with_adapters(tiny_model_dir, {"v0001": adapter})[0]),
        ("review", lambda: convention_review.load_with_adapter(str(tiny_model_dir), adapter)[0]),
    ]


def test_every_learning_loader_follows_the_do_policy(tiny_model_dir, tmp_path, bf16_policy):
    from learnagent.runtime.engine_hf import TransformersModel

    adapter = make_adapter(tiny_model_dir, tmp_path / "v0001")
    do_model = TransformersModel(tiny_model_dir)  # what `do` runs on, by the same policy
    assert do_model.dtype == torch.bfloat16
    for name, load in _loaders(tiny_model_dir, adapter):
        model = load()
        assert _dtypes(model) == {torch.bfloat16}, name
        assert next(model.parameters()).device.type == do_model.device, name


def test_the_student_trains_its_adapter_and_keeps_the_teacher_frozen(tiny_model_dir, tmp_path):
    from learnagent.learning.train_common import STUDENT, TEACHER, TrainConfig, load_student, trainable_parameters

    adapter = make_adapter(tiny_model_dir, tmp_path / "v0001")
    model, _ = load_student(tiny_model_dir, adapter, TrainConfig(), with_teacher=True)
    names = list(trainable_parameters(model))
    assert names and all(f".{STUDENT}." in n for n in names)
    assert any(f".{TEACHER}." in n for n, _ in model.named_parameters())
    assert model.active_adapter == STUDENT
    fresh, _ = load_student(tiny_model_dir, None, TrainConfig(rank=4), with_teacher=True)
    assert list(fresh.peft_config) == [STUDENT] and trainable_parameters(fresh)


def test_an_adapter_of_another_base_is_refused_in_one_line_by_every_loader(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "v0001")
    stamp_adapter(adapter, BaseIdentity("other-model", "0" * 64))
    for name, load in _loaders(tiny_model_dir, adapter):
        with pytest.raises(LearnagentError) as err:
            load()
        assert "belongs to other-model" in str(err.value) and "\n" not in str(err.value), name
    stamp_adapter(adapter, base_identity(tiny_model_dir))  # its own base: loads
    for name, load in _loaders(tiny_model_dir, adapter):
        assert load() is not None, name
