"""Which base model an adapter belongs to: a name and a hash, recorded with the adapter and checked
whenever it is loaded (by transformers, by llama.cpp, by a server).

A base's identity is the sha256 of its weights as the user has them:
- the embedded model (and any model `learnagent model install` converts from a GGUF): the GGUF's
  sha256, recorded at install, so the converted transformers folder and the original GGUF (what
  llama.cpp runs) are the same base;
- any other model folder: the sha256 of its weight files (*.safetensors, else *.bin) in name
  order, computed once and remembered per file size and mtime (hashing GBs on every load
  would cost seconds).

An adapter folder gets `base.json` ({"name", "sha256"}) when the registry seals it; loading it on
a base with another hash is a one-line error. Adapters from before this file have no stamp and
load as before (PEFT still refuses mismatched shapes).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from learnagent.core import home
from learnagent.core.errors import LearnagentError

STAMP = "base.json"
INSTALL_MARKER = "learnagent-model.json"  # core.modelhub.MARKER (not imported: modelhub is heavier)
_CACHE_FILE = "fingerprints.json"


class AdapterMismatch(LearnagentError):
    """An adapter trained on one base was asked to run on another."""


@dataclass(frozen=True)
class BaseIdentity:
    name: str
    sha256: str

    @property
    def short(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:12]})"


def _remembered_sha256(path: Path) -> str:
    """sha256 of a big file, cached by (path, size, mtime_ns) in the cache folder."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = home.cache_home() / _CACHE_FILE
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    from learnagent.core.modelhub import sha256_file

    value = sha256_file(path)
    known[key] = value
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs the hash again next time
        pass
    return value


def weight_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return [f for f in files if not f.name.startswith(("adapter_", "training_args"))]


def base_identity(model: str | Path) -> BaseIdentity:
    """The identity of a base model folder, a GGUF file, or a Hugging Face id in the local cache."""
    path = Path(model).expanduser()
    if path.is_file():  # a GGUF (llama.cpp) or single weights file
        marker = _marker(path.parent)
        if marker.get("gguf") == path.name and marker.get("gguf_sha256"):
            return BaseIdentity(_display_name(path.parent, marker), marker["gguf_sha256"])
        return BaseIdentity(path.stem, _remembered_sha256(path))
    if not path.is_dir():
        path = _hub_snapshot(str(model))
    marker = _marker(path)
    if marker.get("gguf_sha256"):
        return BaseIdentity(_display_name(path, marker), marker["gguf_sha256"])
    files = weight_files(path)
    if not files:
        raise LearnagentError(f"no weight files in {path}: cannot tell which base model it is")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + _remembered_sha256(f).encode())
    value = digest.hexdigest() if len(files) > 1 else _remembered_sha256(files[0])
    return BaseIdentity(_display_name(path, marker), value)


def _marker(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / INSTALL_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _display_name(folder: Path, marker: dict) -> str:
    if marker.get("gguf"):
        return str(marker["gguf"]).split(".")[0]
    try:
        name = json.loads((Path(folder) / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError):
        name = None
    return str(name or Path(folder).name)


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not an id at all
        raise LearnagentError(f"no model folder at '{repo_id}' (and it is not in the local Hugging Face cache)") from None


# ---------------------------------------------------------------- adapter stamps

def stamp_adapter(folder: Path, base: BaseIdentity) -> None:
    """Record in an adapter folder which base it was trained on (atomic write)."""
    folder = Path(folder)
    tmp = folder / f".{STAMP}.tmp"
    tmp.write_text(json.dumps(asdict(base), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / STAMP)


def adapter_base(folder: Path) -> BaseIdentity | None:
    """The base an adapter folder records, or None for an adapter from before stamps."""
    try:
        data = json.loads((Path(folder) / STAMP).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise AdapterMismatch(f"{Path(folder) / STAMP} is unreadable; the adapter's base cannot be checked") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
        raise AdapterMismatch(f"{Path(folder) / STAMP} does not name a base (name, sha256)")
    return BaseIdentity(str(data.get("name") or "?"), data["sha256"])


def check_adapter_base(folder: Path, base: BaseIdentity, label: str | None = None) -> None:
    """One-line error when the adapter at `folder` was trained on another base than `base`."""
    recorded = adapter_base(folder)
    if recorded is not None and recorded.sha256 != base.sha256:
        raise AdapterMismatch(f"adapter {label or Path(folder).name} belongs to {recorded.short}, "
                              f"not to {base.short}; use the base it was trained on")
