"""Which engine runs a local model: detection and choice, in one place.

- `transformers` (always there): the model folder in-process, PEFT adapter.
- `llama.cpp` (the optional extra `learnagent[llama]`): the original GGUF in-process, the adapter
  exported to a GGUF LoRA; several times faster on a CPU. Chosen by `auto` when
  llama-cpp-python imports and the model folder carries its GGUF (`learnagent model install`
  keeps it).
- `serve` (a running `learnagent serve` for this base, `runtime.serving`): the server holds the
  repositories' adapters by name; `auto` picks it whenever one is up for the configured model.
A named engine that is not installed is a one-line error saying how to install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from learnagent.core.errors import UsageError

ENGINES = ("auto", "transformers", "llama.cpp", "serve")
LLAMA_HINT = "install it with `pip install 'learnagent[llama]'` (builds llama.cpp: several minutes)"


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def gguf_of(model_path: str | Path) -> Path | None:
    """The GGUF a model folder was converted from, when it is there (`learnagent model install`)."""
    from learnagent.runtime.identity import _marker

    folder = Path(model_path)
    if not folder.is_dir():
        return None
    name = _marker(folder).get("gguf")
    if name and (folder / name).is_file():
        return folder / name
    return None


def running_server(model_path: str | Path, engine: str = "auto"):
    """The running `learnagent serve` that `do` should use for `model_path` (`ServerInfo`), or None:
    with `auto` whenever one serves this base; with `serve` one must (else a one-line error)."""
    if engine not in ("auto", "serve"):
        return None
    from learnagent.runtime.serving import for_model

    info = for_model(model_path)
    if info is None and engine == "serve":
        raise UsageError(f"[model] engine = 'serve' but no `learnagent serve` is running for {model_path}; "
                         "start one (`learnagent serve`) or set engine = 'auto'")
    return info


def choose_engine(model_path: str | Path, engine: str = "auto") -> str:
    """The in-process engine for `model_path` (a server is chosen by `running_server` first)."""
    if engine not in ENGINES:
        raise UsageError(f"[model] engine = '{engine}' is not one of: {', '.join(ENGINES)}")
    engine = "auto" if engine == "serve" else engine
    if engine == "llama.cpp":
        if not llama_cpp_installed():
            raise UsageError(f"engine llama.cpp asked for but llama-cpp-python is not installed: {LLAMA_HINT}")
        if gguf_of(model_path) is None:
            raise UsageError(f"engine llama.cpp needs the model's GGUF, and {model_path} has none "
                             "(run `learnagent model install --force` for the embedded model)")
        return engine
    if engine == "auto" and llama_cpp_installed() and gguf_of(model_path) is not None:
        return "llama.cpp"
    return "transformers"


def open_local(model_path: str | Path, *, adapter_path: Path | None = None, adapter_version: str | None = None,
               temperature: float = 0.0, reply_format=None, engine: str = "auto", constrain: bool = True,
               device: str | None = None):
    """A `Model` for a local model folder on the engine `engine` picks (see `choose_engine`)."""
    chosen = choose_engine(model_path, engine)
    if chosen == "llama.cpp":
        from learnagent.runtime.engine_llamacpp import LlamaCppModel

        return LlamaCppModel(model_path, adapter_path=adapter_path, adapter_version=adapter_version,
                             temperature=temperature, reply_format=reply_format, constrain=constrain)
    from learnagent.runtime.engine_hf import TransformersModel

    return TransformersModel(model_path, adapter_path=adapter_path, adapter_version=adapter_version,
                             temperature=temperature, reply_format=reply_format, constrain=constrain, device=device)
