"""Privacy controls over the episode store: choose episodes to forget, pause recording, check adapter files.

- `select_episodes`: what `learnagent forget` names (ids, --since, --all); forgetting them spans
  layers (the registry taints adapters, episode folders and branches go): services/forget.py.
- the recording switch `learnagent do` checks (`learnagent logs off`) is the store's
  (`Store.recording_enabled` / `set_recording`), as are all the statements: store/privacy_rows.py.
- `verify_adapter`: a truncated or garbled safetensors file gives a one-line error, not a
  stack trace from deep inside the loader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from learnagent.core.errors import LearnagentError
from learnagent.store.records import Episode


class AdapterCorrupt(LearnagentError):
    pass


# ---- choosing what to forget ---------------------------------------------------------------------

def select_episodes(store, *, repo_id: str | None, ids: list[str] = (), since: float | None = None,
                    everything: bool = False) -> list[Episode]:
    """Episodes named by id prefix, or started at/after `since`, or all of `repo_id`'s; oldest first."""
    chosen = [store.resolve_id(prefix) for prefix in ids]
    if since is not None or everything:
        chosen += store.episode_ids(repo_id=repo_id, since=None if everything else since)
    return store.episodes_by_id(chosen)


# ---- adapter files -------------------------------------------------------------------------------

def verify_safetensors(path: Path) -> dict:
    """Check a safetensors file's header and length without loading it; returns the header."""
    path = Path(path)
    how = "delete it and run `learnagent sleep` again, or roll back with `learnagent adapters`"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise AdapterCorrupt(f"{path} is truncated ({size} bytes, no header); {how}")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise AdapterCorrupt(f"{path} is truncated or not a safetensors file (header of {n} bytes in a "
                                     f"{size}-byte file); {how}")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise AdapterCorrupt(f"cannot read {path}: {exc.strerror or exc}; {how}") from None
    except (ValueError, UnicodeDecodeError):
        raise AdapterCorrupt(f"{path} has a garbled header (not a safetensors file); {how}") from None
    if not isinstance(header, dict):
        raise AdapterCorrupt(f"{path} has a garbled header (not a safetensors file); {how}")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise AdapterCorrupt(f"{path}: tensor '{name}' has no valid data offsets; {how}") from None
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise AdapterCorrupt(f"{path} is truncated: {size} bytes, the header promises {8 + n + end}; {how}")
    return header


def verify_adapter(path: Path) -> None:
    """Raise AdapterCorrupt (one line, with the way out) unless `path` is a loadable adapter.

    `path`: an adapter folder (adapter_config.json + adapter_model.safetensors) or a .safetensors file.
    """
    path = Path(path)
    how = "delete it and run `learnagent sleep` again, or roll back with `learnagent adapters`"
    if path.is_file():
        verify_safetensors(path)
        return
    if not path.is_dir():
        raise AdapterCorrupt(f"adapter {path} does not exist; {how}")
    config = path / "adapter_config.json"
    try:
        json.loads(config.read_text())
    except FileNotFoundError:
        raise AdapterCorrupt(f"adapter {path} has no adapter_config.json (incomplete); {how}") from None
    except ValueError:
        raise AdapterCorrupt(f"{config} is not valid JSON (truncated?); {how}") from None
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise AdapterCorrupt(f"adapter {path} has no .safetensors weights (incomplete); {how}")
    for file in weights:
        verify_safetensors(file)
