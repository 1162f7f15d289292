"""`sleep`'s trainer in 1 and 2 processes (issue 14): per-step time, memory, student tokens/s.

    .venv/bin/python bench/bench_sleep_parallel.py [--steps 6] [--out docs/benchmarks/sleep_parallel.md]

The default method at sleep's settings on SmolLM2-135M (the embedded model), the convention
repository's code-continuation pairs, the same global batch both ways: one process with
grad_accum 2, and two processes (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU,
CUDA hidden) with grad_accum 1 each. Each process gets `--threads` torch threads (default: the
machine's cores divided by the processes). Reported per optimizer step: wall seconds, student
tokens/s (all processes together: what the night trains), peak RSS per process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORKER = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[4])
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[5]))
from learnagent.learning import parallel
from learnagent.learning.opsd import train_opsd
from learnagent.learning.train_common import TrainConfig
from learning_data import code_pairs

model, out, accum, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[6])
r = parallel.init()
pairs = code_pairs()
cfg = TrainConfig(steps=steps, grad_accum=accum, checkpoint_every=0, low_priority=False)
started = time.monotonic()
use0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = use0.ru_utime + use0.ru_stime  # from here: training only (not the imports and the data)
res = train_opsd(model, pairs, None, prev_adapter=None, out_dir=out, config=cfg, progress=False)
use = resource.getrusage(resource.RUSAGE_SELF)
rss = use.ru_maxrss / 1024
peaks = parallel.sum_values(*[rss if i == r.rank else 0.0 for i in range(r.world)])
cpu = parallel.sum_values(use.ru_utime + use.ru_stime - cpu0)[0]
if r.main:
    print("RESULT " + json.dumps({"world": r.world, "steps": res.steps, "seconds": res.seconds, "tokens": res.tokens,
                                  "tokens_per_s": res.tokens_per_s, "peak_rss_mb": peaks, "pairs": len(pairs), "cpu_s": cpu,
                                  "wall": time.monotonic() - started}))
parallel.close()
"""


def run(world: int, model: str, steps: int, threads: int, out: Path) -> dict:
    script = out / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(HERE))
    args = [model, str(out / f"adapter{world}"), str(2 // world), str(HERE), str(threads), str(steps)]
    if world == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(world),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{world} process(es) failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    from learnagent.core.modelhub import installed_default_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores / processes)")
    ap.add_argument("--model", default=None, help="model folder (default: the installed SmolLM2)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "sleep_parallel.md")
    a = ap.parse_args()
    model = a.model or str(installed_default_path() or "")
    if not model:
        raise SystemExit("no model: run `learnagent model install` or pass --model")
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in (1, 2):
            threads = a.threads or max(1, cores // world)
            load = os.getloadavg()[0]
            res = run(world, model, a.steps, threads, Path(tmp))
            res |= {"threads": threads, "load_before": load}
            print(json.dumps(res), flush=True)
            rows.append(res)
    lines = [
        "# `sleep`'s trainer in 1 and 2 processes (bench/bench_sleep_parallel.py)",
        "",
        f"{dt.date.today()}, {platform.machine()} CPU, {cores} cores shared with other engineers' jobs "
        f"(load average before each run in the table), torch {__import__('torch').__version__}; no GPU was "
        "available, so the GPU rows of issue 14 did not run.",
        f"Model {Path(model).name}, the default method at sleep's settings (train_common.TrainConfig), "
        f"{rows[0]['pairs']} code-continuation pairs of the convention repository, {a.steps} optimizer steps of "
        "2 items each: 1 process with grad_accum 2, 2 processes (accelerate launch, gloo) with grad_accum 1.",
        "",
        "| processes | torch threads each | s / step | CPU s / step (all processes) | student tokens/s (all) "
        "| peak RSS per process (MB) | load before |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = " / ".join(f"{v:.0f}" for v in r["peak_rss_mb"])
        steps = max(r["steps"], 1)
        lines.append(f"| {r['world']} | {r['threads']} | {r['seconds'] / steps:.2f} | {r['cpu_s'] / steps:.2f} | "
                     f"{r['tokens_per_s']:.1f} | {rss} | {r['load_before']:.1f} |")
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
