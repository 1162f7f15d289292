"""Choosing the local engine: llama.cpp only when installed and the model folder has its GGUF;
a named engine that cannot run is a one-line error saying what to do."""

from __future__ import annotations

import json

import pytest

from learnagent.core.errors import UsageError
from learnagent.runtime import engines


@pytest.fixture
def folder_with_gguf(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    (folder / "learnagent-model.json").write_text(json.dumps({"gguf": "m.gguf"}))
    return folder


def test_auto_picks_llama_cpp_only_when_installed_and_the_gguf_is_there(folder_with_gguf, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "llama_cpp_installed", lambda: True)
    assert engines.choose_engine(folder_with_gguf) == "llama.cpp"
    assert engines.choose_engine(tmp_path) == "transformers"  # no GGUF in the folder
    (folder_with_gguf / "m.gguf").unlink()
    assert engines.choose_engine(folder_with_gguf) == "transformers"  # the marker names a GGUF that is gone
    monkeypatch.setattr(engines, "llama_cpp_installed", lambda: False)
    (folder_with_gguf / "m.gguf").write_bytes(b"GGUF")
    assert engines.choose_engine(folder_with_gguf) == "transformers"


def test_named_engines_that_cannot_run_are_one_line_errors(folder_with_gguf, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "llama_cpp_installed", lambda: False)
    with pytest.raises(UsageError, match=r"pip install 'learnagent\[llama\]'") as err:
        engines.choose_engine(folder_with_gguf, "llama.cpp")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(engines, "llama_cpp_installed", lambda: True)
    with pytest.raises(UsageError, match="needs the model's GGUF"):
        engines.choose_engine(tmp_path, "llama.cpp")
    with pytest.raises(UsageError, match="not one of: auto, transformers, llama.cpp, serve"):
        engines.choose_engine(folder_with_gguf, "vllm")
    assert engines.choose_engine(folder_with_gguf, "transformers") == "transformers"


def test_a_running_learnagent_serve_is_used_for_its_base_only(folder_with_gguf, tmp_path, monkeypatch):
    """`auto` uses a running `learnagent serve` for the configured model (its state file, its pid
    alive); a stale state file (dead pid) or another base is ignored; `serve` with none is one line."""
    import os

    from learnagent.runtime import serving

    assert engines.running_server(folder_with_gguf) is None  # no server: in-process
    with pytest.raises(UsageError, match="no `learnagent serve` is running") as err:
        engines.running_server(folder_with_gguf, "serve")
    assert "\n" not in str(err.value)
    info = serving.ServerInfo(url="http://127.0.0.1:1/v1", engine="llama.cpp", base_folder=str(folder_with_gguf),
                              base_name="model", pid=os.getpid(), started_at=0.0)
    serving.write_state(info)
    assert engines.running_server(folder_with_gguf) == info
    assert engines.running_server(folder_with_gguf, "serve") == info
    assert engines.running_server(folder_with_gguf, "llama.cpp") is None  # an in-process engine named
    assert engines.running_server(tmp_path) is None  # another base
    assert oct(serving.state_path().stat().st_mode & 0o777) == "0o600"
    serving.write_state(serving.ServerInfo(**{**info.__dict__, "pid": 2 ** 22 + 12345}))  # no such process
    assert engines.running_server(folder_with_gguf) is None
    serving.clear_state(2 ** 22 + 12345)
    assert not serving.state_path().exists()


def test_serve_engine_choice_and_the_vllm_command(tmp_path, monkeypatch):
    """`serve --engine vllm` without vLLM + a GPU is one line; the vLLM command (not run here: no
    GPU) names the base by the folder's name, enables LoRA with run-time loading, and serves every
    adapter under its served name from its PEFT folder."""
    from learnagent.runtime import serving

    monkeypatch.setattr(serving, "vllm_usable", lambda: False)
    with pytest.raises(UsageError, match="needs vLLM installed and a CUDA GPU") as err:
        serving.choose_serve_engine("vllm")
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="use one of auto, llama.cpp, vllm"):
        serving.choose_serve_engine("ollama")
    monkeypatch.setattr(serving, "llamacpp_server_installed", lambda: False)
    with pytest.raises(UsageError, match=r"pip install 'learnagent\[llama\]'"):
        serving.choose_serve_engine("auto")
    monkeypatch.setattr(serving, "vllm_usable", lambda: True)
    assert serving.choose_serve_engine("auto") == "vllm"
    base = tmp_path / "smollm2"
    cmd = serving.vllm_command(base, {"learnagent-k-v0002": tmp_path / "v2", "learnagent-k-v0001": tmp_path / "v1"},
                               host="127.0.0.1", port=8000, max_rank=16)
    assert cmd[cmd.index("--model") + 1] == str(base) and cmd[cmd.index("--served-model-name") + 1] == "smollm2"
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "16"
    assert cmd[cmd.index("--lora-modules") + 1:] == [f"learnagent-k-v0001={tmp_path / 'v1'}",
                                                     f"learnagent-k-v0002={tmp_path / 'v2'}"]


def test_a_port_in_use_is_a_one_line_error():
    import socket

    from learnagent.runtime import serving

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}") as err:
            serving.free_port("127.0.0.1", port)
        assert "\n" not in str(err.value)
    assert serving.free_port("127.0.0.1", 0) > 0
