"""A PEFT adapter as a GGUF LoRA (runtime/gguf_lora.py) and `learnagent adapters export`.

The GGUF LoRA is checked against PEFT itself: in llama.cpp's layout (q/k rows permuted as its
converter stores the base, tests/tiny_gguf.py) the base weight plus `scale * lora_b @ lora_a`
(scale = adapter.lora.alpha / rank, as llama.cpp applies it) must equal PEFT's merged weight,
permuted the same way, for every adapted module. That is the whole contract of a LoRA file for
llama.cpp's loader; running it in llama.cpp is tests/test_llamacpp.py (needs the optional extra).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from learnagent.core.errors import LearnagentError
from learnagent.core.repository import Repository

from tiny_model import LORA_MODULES as MODULES
from tiny_model import make_adapter
LLAMA_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
               "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def merged_weights(base_dir, adapter_dir) -> dict[str, np.ndarray]:
    from peft import PeftModel

    from learnagent.runtime.loading import load_base
    from learnagent.runtime.placement import placement

    base, _ = load_base(base_dir, placement("cpu"))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return {k: v.detach().numpy().copy() for k, v in merged.state_dict().items()}


def gguf_tensors(path) -> tuple[dict, dict]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    fields = {}
    for name, field in reader.fields.items():
        try:
            fields[name] = field.contents()
        except Exception:
            pass
    return tensors, fields


@pytest.mark.parametrize("variant", [{}, {"use_rslora": True}, {"r": 8, "lora_alpha": 8,
                                                                  "alpha_pattern": {"v_proj": 32}}])
def test_gguf_lora_reproduces_the_merged_peft_weights_in_llama_cpp_layout(tiny_model_dir, tmp_path, variant):
    from tiny_gguf import _permute

    from learnagent.runtime.gguf_lora import convert
    from learnagent.runtime.identity import base_identity

    adapter = make_adapter(tiny_model_dir, tmp_path / "v0001", **variant)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    out = convert(adapter, config, tmp_path / "out" / "a.gguf", base=base_identity(tiny_model_dir), version="v0001")
    tensors, fields = gguf_tensors(out)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert fields["learnagent.adapter.version"] == "v0001"
    assert fields["learnagent.base.sha256"] == base_identity(tiny_model_dir).sha256
    alpha = float(fields["adapter.lora.alpha"])

    from safetensors.numpy import load_file

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    merged = merged_weights(tiny_model_dir, adapter)
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    checked = 0
    for layer in range(config["num_hidden_layers"]):
        for module in MODULES:
            group = "self_attn" if module.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            key = f"model.layers.{layer}.{group}.{module}.weight"
            name = f"blk.{layer}.{LLAMA_NAMES[module]}.weight"
            a, b = tensors[f"{name}.lora_a"], tensors[f"{name}.lora_b"]
            rank = b.shape[1]
            assert a.shape[0] == rank  # llama.cpp reads the rank from lora_b, and checks lora_a against it
            delta = (alpha / rank) * (b @ a)  # what llama.cpp adds at user scale 1
            heads = {"q_proj": n_head, "k_proj": n_kv}.get(module)
            layout = (lambda w: _permute(w, heads)) if heads else (lambda w: w)
            np.testing.assert_allclose(layout(base[key]) + delta, layout(merged[key]), atol=2e-6, rtol=1e-5)
            assert np.abs(delta).max() > 1e-4  # the adapter really changes this weight
            checked += 1
    assert checked == config["num_hidden_layers"] * len(MODULES)


def test_export_refuses_what_llama_cpp_cannot_hold(tiny_model_dir, tmp_path):
    from learnagent.runtime.gguf_lora import ExportError, convert

    config = json.loads((tiny_model_dir / "config.json").read_text())
    dora = make_adapter(tiny_model_dir, tmp_path / "dora", use_dora=True, target_modules=["q_proj"])
    with pytest.raises(ExportError, match="DoRA"):
        convert(dora, config, tmp_path / "x.gguf")
    head = make_adapter(tiny_model_dir, tmp_path / "head", target_modules=["q_proj", "lm_head"])
    with pytest.raises(ExportError, match="lm_head|decoder-layer"):
        convert(head, config, tmp_path / "y.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp*"))  # nothing half-written
    with pytest.raises(ExportError, match="not 'gpt2'"):
        convert(make_adapter(tiny_model_dir, tmp_path / "ok"), config | {"model_type": "gpt2"}, tmp_path / "z.gguf")


def test_an_adapter_stamped_for_another_base_is_refused_in_one_line(tiny_model_dir, tmp_path):
    from learnagent.runtime.export import export
    from learnagent.runtime.identity import BaseIdentity, stamp_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "v0002")
    stamp_adapter(adapter, BaseIdentity("other-model", "0" * 64))
    with pytest.raises(LearnagentError) as err:
        export(adapter, "v0002", tiny_model_dir, "gguf", tmp_path / "out")
    assert "belongs to other-model" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the CLI


def registry_adapter(repo, base_dir, version="v0001"):
    """An adapter as `sleep` leaves it in the registry: the PEFT folder + lineage.json (written last)."""
    folder = Repository.at(repo).adapters_dir / version
    make_adapter(base_dir, folder)
    (folder / "lineage.json").write_text(json.dumps({"version": version, "base_model": f"local:{base_dir}"}))
    return folder


def test_cli_exports_each_format_and_prints_the_serve_command(git_repo, tiny_model_dir, tmp_path):
    from cli_helpers import run_cli

    registry_adapter(git_repo, tiny_model_dir)
    name = f"learnagent-{Repository.at(git_repo).key}-v0001"  # what `do` asks a server for (served_adapters)
    results = {}
    for fmt in ("peft", "gguf", "ollama"):
        out = run_cli("adapters", "export", "v0001", "--format", fmt, "--out", str(tmp_path / fmt), "--json",
                      cwd=git_repo, timeout=600)
        assert out.returncode == 0, out.stderr
        results[fmt] = json.loads(out.stdout)
    peft = results["peft"]
    assert {p.rsplit("/", 1)[1] for p in peft["files"]} >= {"adapter_config.json", "adapter_model.safetensors",
                                                             "lineage.json"}
    assert peft["serve"].startswith("vllm serve ") and "--enable-lora" in peft["serve"]
    assert "--max-lora-rank 8" in peft["serve"] and f"{name}={tmp_path / 'peft'}" in peft["serve"]
    gguf_file = tmp_path / "gguf" / f"{name}.gguf"
    assert results["gguf"]["files"] == [str(gguf_file)]
    assert f"--lora_path {gguf_file}" in results["gguf"]["serve"]
    assert "keeps no GGUF" in results["gguf"]["note"]  # the tiny base folder has no GGUF: said, not hidden
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert f"\nADAPTER ./{name}.gguf\n" in modelfile and "\nFROM " in modelfile
    assert results["ollama"]["serve"].startswith(f"ollama create {name} -f ")
    # the three GGUF LoRAs written for gguf and ollama are the same bytes
    assert gguf_file.read_bytes() == (tmp_path / "ollama" / f"{name}.gguf").read_bytes()
    # the plain output names the files and the command
    plain = run_cli("adapters", "export", "v0001", "--format", "gguf", "--out", str(tmp_path / "again"),
                    cwd=git_repo, timeout=600)
    assert plain.returncode == 0 and "serve it with:" in plain.stdout and "llama_cpp.server" in plain.stdout


def test_cli_bad_input_is_one_line_with_exit_2(git_repo, tiny_model_dir, tmp_path):
    from cli_helpers import run_cli

    registry_adapter(git_repo, tiny_model_dir)
    for args, words in [(["v0009", "--out", str(tmp_path / "o")], "no adapter 'v0009'"),
                        (["v0001", "--format", "onnx", "--out", str(tmp_path / "o")], "--format onnx")]:
        out = run_cli("adapters", "export", *args, cwd=git_repo, timeout=300)
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
