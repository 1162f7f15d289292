"""The regex matching of `<search>`, run in a child process that the tool kills at its deadline.

Python's `re` backtracks: a pattern like `(a|aa)+$` on a long line runs for hours, and a
running match cannot be interrupted from inside the process (no timeout, signals wait for it).
So `Tools.tool_search` hands the file list to `python -m learnagent.agent.search_worker`, reads
the hits it streams back, and kills it when the time limit is reached; the hits found so far
are kept. Input (stdin, JSON): {"root", "pattern", "files" (relative paths), "max_hits"}.
Output (stdout): one JSON list [path, line number, line text] per hit, flushed as found.

Only the standard library and `fileio` are imported, so the child starts in ~50 ms.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable

from learnagent.agent.fileio import bounded_lines, looks_binary, open_regular

MAX_LINE_BYTES = 1 << 20  # a longer line is matched on its first MiB only
SHOWN_CHARS = 200


def search_files(root: str, pattern: str, files: Iterable[str], max_hits: int,
                 on_hit: Callable[[str, int, str], None]) -> int:
    """Call on_hit(path, line number, stripped line) for each matching line; returns the number of hits.
    Files that are not regular (FIFOs, devices, symlinks), unreadable or binary are skipped."""
    regex = re.compile(pattern)
    hits = 0
    for rel in files:
        try:
            fd = open_regular(os.path.join(root, rel))
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            if looks_binary(fd):
                continue
            for n, (raw, _length) in enumerate(bounded_lines(fh, MAX_LINE_BYTES), 1):
                line = raw.decode("utf-8", "replace")
                if regex.search(line):
                    on_hit(rel, n, line.strip()[:SHOWN_CHARS])
                    hits += 1
                    if hits >= max_hits:
                        return hits
    return hits


def main() -> None:
    job = json.load(sys.stdin)

    def emit(path: str, n: int, text: str) -> None:
        sys.stdout.write(json.dumps([path, n, text]) + "\n")
        sys.stdout.flush()

    search_files(job["root"], job["pattern"], job["files"], job["max_hits"], emit)


if __name__ == "__main__":
    main()
