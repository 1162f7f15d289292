"""An adapter for the engine of the user's choice: `learnagent adapters export VERSION --format F --out DIR`.

- `peft`: the PEFT folder as it is (adapter_config.json + adapter_model.safetensors) with its
  base stamp and lineage; served by vLLM (`--enable-lora --lora-modules NAME=DIR`) or loaded
  with `PeftModel.from_pretrained`.
- `gguf`: a GGUF LoRA (`runtime.gguf_lora`) for llama.cpp on the base's original GGUF.
- `ollama`: the GGUF LoRA plus a Modelfile (`FROM` the base GGUF, `ADAPTER` the LoRA).
Each result comes with the command that serves it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.errors import UsageError
from learnagent.runtime.identity import BaseIdentity, base_identity

FORMATS = ("peft", "gguf", "ollama")
GGUF_NAME = "adapter.gguf"  # the derived GGUF LoRA inside a registry adapter folder
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors", "base.json", "lineage.json", "metrics.json")


@dataclass
class Exported:
    format: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    serve_command: str = ""
    note: str = ""


def served_name(repo_key: str | None, version: str) -> str:
    """The model name an adapter is served under — the one place that decides it (`serve`, the
    registry's hook, `do`, `adapters export`): `learnagent-<key as one segment>-<version>`. Unique
    per repository, so one server holds every repository's adapters on one base; a team name's
    slashes never reach the model part (`learnagent-github.com_acme_api-3bc8cf-v0003`:
    core.repository.segment_of), so `openai/<name>` is one provider and one model for litellm, and
    no server takes it for a path. A local 12-hex key stays as it is (`learnagent-<key>-v0003`)."""
    from learnagent.core.repository import segment_of

    return f"learnagent-{segment_of(repo_key)}-{version}" if repo_key else f"learnagent-{version}"


def _base_config(base_folder: Path) -> dict:
    try:
        return json.loads((Path(base_folder) / "config.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"{base_folder} has no readable config.json: cannot tell the base's architecture") from None


def gguf_lora_for(adapter_dir: Path, base_folder: Path, *, version: str | None = None) -> Path:
    """The adapter's GGUF LoRA, written next to its PEFT weights when missing or older than them.

    The adapter is checked first (complete, trained on this base)."""
    from learnagent.runtime.gguf_lora import convert
    from learnagent.runtime.loading import check_adapter

    adapter_dir = Path(adapter_dir).resolve()
    base = base_identity(base_folder)
    check_adapter(adapter_dir, base, version or adapter_dir.name)
    target = adapter_dir / GGUF_NAME
    weights = adapter_dir / "adapter_model.safetensors"
    if target.is_file() and target.stat().st_mtime_ns >= weights.stat().st_mtime_ns:
        return target
    return convert(adapter_dir, _base_config(base_folder), target, base=base, version=version or adapter_dir.name)


def export(adapter_dir: Path, version: str, base_folder: Path, fmt: str, out_dir: Path,
           *, name: str | None = None) -> Exported:
    """Write adapter `version` (folder `adapter_dir`, trained on `base_folder`) in format `fmt` to `out_dir`."""
    from learnagent.runtime.engines import gguf_of
    from learnagent.runtime.gguf_lora import convert
    from learnagent.runtime.loading import check_adapter

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    base = base_identity(base_folder)
    check_adapter(Path(adapter_dir), base, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or served_name(None, version)
    if fmt == "peft":
        files = []
        for f in PEFT_FILES:
            if (Path(adapter_dir) / f).is_file():
                shutil.copy2(Path(adapter_dir) / f, out_dir / f)
                files.append(out_dir / f)
        command = (f"vllm serve {_hf_name(base_folder, base)} --enable-lora --max-lora-rank {_rank(adapter_dir)} "
                   f"--lora-modules {name}={out_dir.resolve()}")
        return Exported(fmt, out_dir, files, command, "or: PeftModel.from_pretrained(base, DIR)")
    gguf_file = convert(Path(adapter_dir), _base_config(base_folder), out_dir / f"{name}.gguf", base=base,
                        version=version)
    base_gguf = gguf_of(base_folder)
    base_arg = str(base_gguf) if base_gguf else "BASE.gguf"
    missing = "" if base_gguf else f"; {base_folder} keeps no GGUF: convert the base with llama.cpp first"
    if fmt == "gguf":
        command = f"python -m llama_cpp.server --model {base_arg} --lora_path {gguf_file.resolve()}"
        return Exported(fmt, out_dir, [gguf_file], command,
                        f"or: llama-server -m {base_arg} --lora {gguf_file.resolve()}{missing}")
    modelfile = out_dir / "Modelfile"
    modelfile.write_text(_modelfile(base_arg, gguf_file.name, version, base))
    command = f"ollama create {name} -f {modelfile.resolve()} && ollama run {name}"
    return Exported(fmt, out_dir, [gguf_file, modelfile], command, missing.lstrip("; "))


def _modelfile(base_gguf: str, lora_name: str, version: str, base: BaseIdentity) -> str:
    return (f"# learnagent adapter {version} for {base.short}\n"
            f"FROM {base_gguf}\n"
            f"ADAPTER ./{lora_name}\n"
            'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
            '{{ end }}<|im_start|>assistant\n"""\n'
            'PARAMETER stop "<|im_end|>"\n'
            "PARAMETER temperature 0\n")


def _rank(adapter_dir: Path) -> int:
    """The smallest --max-lora-rank vLLM accepts for this adapter (its sizes: 8, 16, 32, 64, ...)."""
    try:
        r = int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("r", 16))
    except (OSError, ValueError):
        r = 16
    for size in (8, 16, 32, 64, 128, 256, 320, 512):
        if r <= size:
            return size
    return r


def _hf_name(base_folder: Path, base: BaseIdentity) -> str:
    return str(Path(base_folder).resolve())
