"""Writing a benchmark's results file without losing the analysis written under it by hand."""

from __future__ import annotations

from pathlib import Path

MARKER = "<!-- analysis: written by hand, kept across reruns -->"


def write_keeping_analysis(path: Path, generated: str) -> None:
    """Replace the generated part of `path`; everything from MARKER on survives a rerun
    (re-check it against the new numbers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else ""
    kept = old[old.index(MARKER):] if MARKER in old else MARKER + "\n"
    path.write_text(generated.rstrip("\n") + "\n\n" + kept)
