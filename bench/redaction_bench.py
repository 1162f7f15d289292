"""Redaction speed on 1 MB and false positives on real source code (docs/benchmarks/redaction.md).

Usage: python bench/redaction_bench.py [--show] [--mb 40] [--config-mb 10] [--compare OLD_REDACT.py]
  --show      print every changed line
  --compare   also count the false positives of another redact.py (e.g. `git show main:store/redact.py`)
Real code: .py and .js files of the installed packages in the current environment; config and docs:
their .md/.rst/.txt/.yaml/.sh/.ini/.cfg/.toml/.json files (where env-style and YAML assignments live).
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


CODE = ("*.py", "*.js")
CONFIG = ("*.md", "*.rst", "*.txt", "*.yaml", "*.yml", "*.sh", "*.ini", "*.cfg", "*.toml", "*.json")


def code_files(limit_bytes: int, seed: int = 0, patterns: tuple[str, ...] = CODE) -> list[Path]:
    """A random sample (fixed seed) of source files across all installed packages."""
    candidates = []
    for root in (Path(p) for p in site.getsitepackages()):
        for pattern in patterns:
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


def count_changed(files: list[Path], redact, show: bool) -> tuple[int, int]:
    """(changed lines, lines) over `files`."""
    lines = changed = 0
    for path in files:
        text = path.read_text(errors="replace")
        out = redact(text)
        src_lines = text.splitlines()
        lines += len(src_lines)
        if out != text:
            for a, b in zip(src_lines, out.splitlines()):
                if a != b:
                    changed += 1
                    if show:
                        print(f"{path.name}: {a.strip()[:160]}")
    return changed, lines


def load_redact(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("redact_compared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.redact_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--mb", type=float, default=5.0, help="megabytes of code for the false-positive count")
    ap.add_argument("--config-mb", type=float, default=0.0, help="megabytes of config/docs files (0: skip)")
    ap.add_argument("--compare", help="another redact.py whose false positives are counted on the same files")
    args = ap.parse_args()

    samples = [("code", code_files(int(args.mb * 1_000_000)))]
    if args.config_mb:
        samples.append(("config/docs", code_files(int(args.config_mb * 1_000_000), patterns=CONFIG)))
    versions = [("this", redact_text)] + ([("compared", load_redact(args.compare))] if args.compare else [])
    for label, files in samples:
        for version, redact in versions:
            changed, lines = count_changed(files, redact, args.show and version == "this")
            print(f"false positives ({version}, {label}): {changed} of {lines} lines changed "
                  f"({100 * changed / max(lines, 1):.4f}%) in {len(files)} files")

    blob = "".join(p.read_text(errors="replace") for p in code_files(1_100_000))[:1_000_000]
    # worst case: 1 MB of command output dense with secrets (every line holds one)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from secret_samples import SAMPLES
    dense = "\n".join(t for t, _ in SAMPLES.values())
    dense = (dense + "\n") * (1_000_000 // (len(dense) + 1))
    # the versions take turns, so that a change in the machine's load hits both alike
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(5):
        for version, redact in versions:
            for label, text in (("code", blob), ("dense", dense)):
                t = time.perf_counter()
                redact(text)
                times.setdefault((version, label), []).append(time.perf_counter() - t)
    machine = f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}"
    for version, _ in versions:
        code, dense_t = times[(version, "code")], times[(version, "dense")]
        print(f"speed ({version}): 1 MB of code: median {statistics.median(code) * 1000:.1f} ms, best "
              f"{min(code) * 1000:.1f} ms; 1 MB of secret-dense text ({len(SAMPLES)} kinds repeated): median "
              f"{statistics.median(dense_t) * 1000:.1f} ms; 5 runs each ({machine})")


if __name__ == "__main__":
    main()
