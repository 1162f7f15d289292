"""Redaction speed on 1 MB and false positives on real source code (docs/benchmarks/redaction.md).

Usage: python bench/redaction_bench.py [--show]   (--show prints every changed line)
Real code: .py and .js files of the installed packages in the current environment.
"""

from __future__ import annotations

import argparse
import platform
import random
import site
import statistics
import sys
import time
from pathlib import Path

from learnagent.store.redact import redact_text


def code_files(limit_bytes: int, seed: int = 0) -> list[Path]:
    """A random sample (fixed seed) of source files across all installed packages."""
    candidates = []
    for root in (Path(p) for p in site.getsitepackages()):
        for pattern in ("*.py", "*.js"):
            for path in root.rglob(pattern):
                # detect-secrets and test files ship sample secrets and fixtures on purpose
                if "detect_secrets" in path.parts or "test" in path.name or "tests" in path.parts:
                    continue
                candidates.append(path)
    candidates.sort()
    random.Random(seed).shuffle(candidates)
    files, total = [], 0
    for path in candidates:
        size = path.stat().st_size
        if 0 < size < 200_000:
            files.append(path)
            total += size
        if total >= limit_bytes:
            break
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--mb", type=float, default=5.0, help="megabytes of code for the false-positive count")
    args = ap.parse_args()

    files = code_files(int(args.mb * 1_000_000))
    lines = changed = 0
    for path in files:
        text = path.read_text(errors="replace")
        out = redact_text(text)
        src_lines = text.splitlines()
        lines += len(src_lines)
        if out != text:
            for a, b in zip(src_lines, out.splitlines()):
                if a != b:
                    changed += 1
                    if args.show:
                        print(f"{path.name}: {a.strip()[:160]}")
    print(f"false positives: {changed} of {lines} lines changed ({100 * changed / max(lines, 1):.4f}%) "
          f"in {len(files)} files")

    blob = "".join(p.read_text(errors="replace") for p in code_files(1_100_000))[:1_000_000]
    times = []
    for _ in range(5):
        t = time.perf_counter()
        redact_text(blob)
        times.append(time.perf_counter() - t)
    # worst case: 1 MB of command output dense with secrets (every line holds one)
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from secret_samples import SAMPLES
    dense = "\n".join(t for t, _ in SAMPLES.values())
    dense = (dense + "\n") * (1_000_000 // (len(dense) + 1))
    t = time.perf_counter()
    redact_text(dense)
    print(f"1 MB of secret-dense text ({len(SAMPLES)} kinds repeated): {(time.perf_counter() - t) * 1000:.1f} ms")
    print(f"1 MB of code: median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms over 5 runs "
          f"({platform.processor() or platform.machine()}, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
