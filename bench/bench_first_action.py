"""Does the embedded model's first reply hold a valid action? With and without the worked
example (agent/prompts.worked_example). Writes docs/benchmarks/first_action.md.

    python bench/bench_first_action.py [--threads 2] [--max-new-tokens 80]

The first reply of `learnagent do`: the agent loop's opening messages (`prompts.opening_messages`:
system prompt, optional example, task + a repository map line) answered by the local backend
(`LocalModel.complete`, greedy: the default temperature 0), for 12 small tasks; an action counts
when `agent.actions.parse_action` accepts it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from report_file import write_keeping_analysis  # noqa: E402

TASKS = [
    ("Add a function sub(a, b) to calc.py that returns a - b", "calc.py:\n│def add(a, b):"),
    ("Rename the function add in calc.py to plus", "calc.py:\n│def add(a, b):"),
    ("Add a docstring to add in calc.py", "calc.py:\n│def add(a, b):"),
    ("Make greet() in app.py print 'Hello, world!'", "app.py:\n│def greet():"),
    ("Fix the failing test in test_calc.py", "calc.py:\n│def add(a, b):\ntest_calc.py:\n│def test_add():"),
    ("Add type hints to the functions in utils.py", "utils.py:\n│def slugify(title):\n│def chunked(items, size):"),
    ("Make parse_port in config.py raise ValueError for ports above 65535", "config.py:\n│def parse_port(text):"),
    ("Add a --verbose flag to the argument parser in cli.py", "cli.py:\n│def build_parser():\n│def main():"),
    ("Remove the unused import os from main.py", "main.py:\n│def run():"),
    ("Add a test for slugify in tests/test_utils.py", "utils.py:\n│def slugify(title):"),
    ("Log a warning in load() in store.py when the file is missing", "store.py:\n│class Store:\n│    def load(self):"),
    ("Return an empty list from find_all in search.py when the query is empty", "search.py:\n│def find_all(query, items):"),
]


def first_reply(model, tok, messages, max_new_tokens):
    import torch

    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True), ids.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "first_action.md")
    args = ap.parse_args()
    import torch

    from learnagent.agent.actions import FormatError, parse_action
    from learnagent.runtime.engine_hf import TransformersModel as LocalModel
    from learnagent.agent.prompts import opening_messages
    from learnagent.core.modelhub import installed_default_path

    torch.set_num_threads(args.threads)
    path = installed_default_path()
    if path is None:
        sys.exit("SmolLM2-135M is not installed: run `learnagent model install` first")
    model = LocalModel(path, device="cpu")
    test = "python -m pytest -q"
    rows, totals, started = [], {}, time.perf_counter()
    for example in (False, True):
        valid = 0
        for task, repo_map in TASKS:
            reply = model.complete(opening_messages(task, repo_map, test, example), max_tokens=args.max_new_tokens)
            text, prompt_tokens = reply.text, reply.prompt_tokens
            try:
                action = parse_action(text)
                verdict, valid = f"`{action.name}` {action.args or ''}", valid + 1
            except FormatError as exc:
                verdict = "format error: " + str(exc).split(".")[0]
            shown = text.strip().replace("\n", "⏎ ").replace("|", "\\|")[:90]
            rows.append(f"| {'with' if example else 'without'} | {task} | {prompt_tokens} | {verdict} | {shown} |")
            print(rows[-1], file=sys.stderr, flush=True)
        totals[example] = valid
    lines = ["# First reply of the embedded model: a valid action, with and without the worked example", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}; "
             f"{time.strftime('%Y-%m-%d')}; SmolLM2-135M-Instruct ({model.dtype}) through LocalModel, greedy, <= {args.max_new_tokens} new tokens; "
             f"{time.perf_counter() - started:.0f} s. Written by `python bench/bench_first_action.py`.", "",
             f"**Valid first actions: without the example {totals[False]}/{len(TASKS)}, "
             f"with it {totals[True]}/{len(TASKS)}.**", "",
             "| example | task | prompt tokens | parsed as | reply (start) |", "|---|---|---|---|---|", *rows]
    write_keeping_analysis(args.out, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
