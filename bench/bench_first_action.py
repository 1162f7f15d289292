"""Does the embedded model's first reply hold a valid action? With and without the worked
example (agent/prompts.worked_example), with and without decoding under the action grammar
(runtime/grammar.py, llguidance). Writes docs/benchmarks/first_action.md.

    python bench/bench_first_action.py [--threads 2] [--max-new-tokens 80] [--grammar both|on|off]

The first reply of `learnagent do`: the agent loop's opening messages (`prompts.opening_messages`:
system prompt, optional example, task + a repository map line) answered by the transformers
engine as `do` runs it (greedy: the default temperature 0; the reply stops after its first
complete action), for 12 small tasks. An action is *valid* when `agent.actions.parse_action`
accepts it; it is *on target* (the first step of task success measurable without running the
whole episode) when it is valid and every file it names is a file of the task's repository map
(`<test/>`, `<run>`, `<finish>`, and `<list>`/`<search>` of the repository or of a folder holding a
mapped file count as on target; a read of a file not in the map, or `<list path="DIR"/>` copied from
the system prompt, does not).
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


def on_target(action, repo_map: str) -> bool:
    files = {line.rstrip(":") for line in repo_map.splitlines() if line.endswith(":")}
    path = (action.args.get("path") or "").strip().removeprefix("./")
    if action.name in ("test", "finish", "run"):
        return True
    if action.name in ("list", "search"):  # the whole repository, or a folder that holds a mapped file
        return path in ("", ".") or any(f.startswith(path.rstrip("/") + "/") for f in files)
    return path in files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--grammar", choices=("both", "on", "off"), default="both")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "first_action.md")
    args = ap.parse_args()
    import torch

    from learnagent.agent.actions import FormatError, parse_action, reply_format
    from learnagent.agent.prompts import opening_messages
    from learnagent.core.modelhub import installed_default_path
    from learnagent.runtime.engine_hf import TransformersModel

    torch.set_num_threads(args.threads)
    path = installed_default_path()
    if path is None:
        sys.exit("SmolLM2-135M is not installed: run `learnagent model install` first")
    grammars = {"both": (False, True), "on": (True,), "off": (False,)}[args.grammar]
    models = {g: TransformersModel(path, device="cpu", reply_format=reply_format(), constrain=g) for g in grammars}
    if True in models and models[True].grammar is None:
        sys.exit("llguidance is not installed: the grammar cannot be applied")
    test = "python -m pytest -q"
    rows, summary, started = [], [], time.perf_counter()
    for grammar in grammars:
        model = models[grammar]
        for example in (False, True):
            valid = target = tokens = 0
            seconds = 0.0
            for task, repo_map in TASKS:
                reply = model.complete(opening_messages(task, repo_map, test, example), max_tokens=args.max_new_tokens)
                text, prompt_tokens = reply.text, reply.prompt_tokens
                tokens, seconds = tokens + reply.completion_tokens, seconds + reply.duration_s
                try:
                    action = parse_action(text)
                    hit = on_target(action, repo_map)
                    verdict, valid, target = f"`{action.name}` {action.args or ''}", valid + 1, target + hit
                    verdict += "" if hit else " (off target)"
                except FormatError as exc:
                    verdict = "format error: " + str(exc).split(".")[0]
                shown = text.strip().replace("\n", "⏎ ").replace("|", "\\|")[:90]
                rows.append(f"| {'on' if grammar else 'off'} | {'with' if example else 'without'} | {task} | "
                            f"{prompt_tokens} | {reply.completion_tokens} | {verdict} | {shown} |")
                print(rows[-1], file=sys.stderr, flush=True)
            summary.append(f"| {'on' if grammar else 'off'} | {'with' if example else 'without'} | "
                           f"{valid}/{len(TASKS)} | {target}/{len(TASKS)} | {tokens / len(TASKS):.1f} | "
                           f"{seconds / len(TASKS):.2f} s |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# First reply of the embedded model: a valid action, with and without the worked example and the grammar", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, load average at the end "
             f"{load:.1f}; {time.strftime('%Y-%m-%d')}; SmolLM2-135M-Instruct ({models[grammars[0]].dtype}) on the "
             f"transformers engine, greedy, <= {args.max_new_tokens} new tokens, the reply stopped after its first "
             f"complete action; grammar = llguidance ({_version('llguidance')}); "
             f"{time.perf_counter() - started:.0f} s. Written by `python bench/bench_first_action.py`.", "",
             "| grammar | example | valid actions | on target | mean new tokens | mean seconds per reply |",
             "|---|---|---|---|---|---|", *summary, "",
             "| grammar | example | task | prompt tokens | new tokens | parsed as | reply (start) |",
             "|---|---|---|---|---|---|---|", *rows]
    write_keeping_analysis(args.out, "\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
