"""Data for bench/bench_vs_trl.py: one repository convention, stated in the context c.

The convention: every function carries type hints on its arguments and its return value.
In a pilot (4 probe tasks x 3 samples, 32 new tokens) the base SmolLM2-135M wrote them 0 of
12 times, and 5 of 12 times with the convention in its context: a gap for OPSD (and TRL's
SDFT) to close. (Two other conventions piloted, a `qx_` name prefix and a `# qx` first
line, reached 0-1 of 12 even WITH the context: the 135M model cannot be taught by a
teacher that does not itself follow the rule.)

Training pairs and probes use disjoint tasks: the probes measure whether the adapter
writes type hints on tasks it never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

CONVENTION = ("Repository convention: every function has type hints on its arguments and return value. "
              "Example:\n```python\ndef cube(n: int) -> int:\n    return n ** 3\n```")
# an annotated argument and a return annotation in the same def line
EXPECT = r"def \w+\([^)]*:\s*\w+[^)]*\)\s*->"

# (task, signature with hints, body): SFT targets are built from these.
TRAIN_TASKS = [
    ("returns the sum of two numbers", "add(a: int, b: int) -> int", "return a + b"),
    ("returns the difference of two numbers", "subtract(a: float, b: float) -> float", "return a - b"),
    ("returns the product of a list of numbers", "product(items: list[int]) -> int",
     "result = 1\n    for x in items:\n        result *= x\n    return result"),
    ("checks whether a string is empty", "is_empty(text: str) -> bool", "return len(text) == 0"),
    ("returns the last item of a list", "last(items: list) -> object", "return items[-1]"),
    ("counts the vowels in a string", "count_vowels(text: str) -> int",
     "return sum(1 for c in text.lower() if c in 'aeiou')"),
    ("converts Celsius to Fahrenheit", "to_fahrenheit(celsius: float) -> float", "return celsius * 9 / 5 + 32"),
    ("returns the absolute value of a number", "absolute(n: int) -> int", "return n if n >= 0 else -n"),
    ("joins a list of words with spaces", "join_words(words: list[str]) -> str", "return ' '.join(words)"),
    ("returns the average of a list of numbers", "average(items: list[float]) -> float",
     "return sum(items) / len(items)"),
    ("checks whether a number is negative", "is_negative(n: int) -> bool", "return n < 0"),
    ("returns a list without duplicates", "unique(items: list) -> list", "return list(dict.fromkeys(items))"),
    ("returns the smallest item of a list", "smallest(items: list[int]) -> int", "return min(items)"),
    ("doubles every number in a list", "double_all(items: list[int]) -> list[int]", "return [2 * x for x in items]"),
    ("returns the length of the longest word in a sentence", "longest_word_length(sentence: str) -> int",
     "return max(len(w) for w in sentence.split())"),
    ("checks whether a list is sorted", "is_sorted(items: list[int]) -> bool", "return items == sorted(items)"),
]

PROBE_TASKS = [
    "returns the square of a number",
    "checks whether a number is even",
    "reverses a string",
    "returns the largest item of a list",
    "counts the words in a sentence",
    "returns the factorial of a number",
    "checks whether a string is a palindrome",
    "returns the first n even numbers",
    "converts a string to upper case",
    "returns the sum of the digits of a number",
    "merges two dictionaries",
    "removes the spaces from a string",
]


def prompt_text(task: str) -> str:
    return f"Write a Python function that {task}."


def sft_target(signature: str, body: str) -> str:
    return f"```python\ndef {signature}:\n    {body}\n```"


def train_records(n: int | None = None) -> list[dict]:
    """[{id, prompt (messages), context, target}] for our trainers and TRL alike."""
    rows = [{"id": f"train-{i:02d}", "prompt": [{"role": "user", "content": prompt_text(task)}],
             "context": CONVENTION, "target": sft_target(signature, body)}
            for i, (task, signature, body) in enumerate(TRAIN_TASKS)]
    return rows[:n] if n else rows


# An existing module of the repository, shown to the agent as "the code before the change":
# with it x has the length of a real imported-history pair (~400 tokens, where the short
# prompts above have ~40; `do` episodes, with the agent's instructions and the repo map,
# run to 1-2k).
BEFORE_MODULE = '''"""Small helpers shared by the command-line tools."""

from __future__ import annotations

import os
import re
from pathlib import Path


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, without their line endings."""
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\\n".join(lines) + "\\n", encoding="utf-8")


def slugify(title: str, max_length: int = 40) -> str:
    """Lower-case words joined by dashes, safe in file names and URLs."""
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words)[:max_length].rstrip("-")


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def chunked(items: list[str], size: int) -> list[list[str]]:
    if size <= 0:
        raise ValueError("size must be positive")
    return [items[i:i + size] for i in range(0, len(items), size)]


def percent(part: float, whole: float) -> str:
    return "n/a" if whole == 0 else f"{100 * part / whole:.1f}%"


def common_prefix(paths: list[Path]) -> Path | None:
    if not paths:
        return None
    return Path(os.path.commonpath([str(p) for p in paths]))
'''


def episode_records() -> list[dict]:
    """The same 16 tasks shaped like real sleep pairs: built by learnagent's own pair builder
    (learning/pairs.py) from imported-history episodes. x = the history system prompt, the
    task and the module before the change; c = lessons, the accepted diff and the conventions
    file. Used for the throughput comparison at realistic lengths (`--shape episode`)."""
    from learnagent.learning.pairs import episode_prompt, experience_context
    from learnagent.store.records import Episode

    conventions = f"CONVENTIONS.md:\n{CONVENTION}"
    rows = []
    for i, (task, signature, body) in enumerate(TRAIN_TASKS):
        added = ["", "", f"def {signature}:", f"    {body}"]
        diff = ("diff --git a/src/tools/helpers.py b/src/tools/helpers.py\n--- a/src/tools/helpers.py\n"
                "+++ b/src/tools/helpers.py\n@@ -55,4 +55,{n} @@\n".format(n=4 + len(added)) +
                " def common_prefix(paths: list[Path]) -> Path | None:\n     if not paths:\n         return None\n"
                "     return Path(os.path.commonpath([str(p) for p in paths]))\n" +
                "".join(f"+{line}\n" for line in "\n".join(added).splitlines()))
        ep = Episode(id=f"train-{i:02d}", repo_id="tools", source="history", task=f"Add a function that {task}.",
                     status="finished", outcome="accepted", started_at=0.0, repo_name="tools", final_diff=diff,
                     meta={"before": {"src/tools/helpers.py": BEFORE_MODULE}})
        rows.append({"id": ep.id, "prompt": episode_prompt(ep), "context": experience_context(ep, conventions),
                     "target": sft_target(signature, body)})
    return rows


def probe_records() -> list[dict]:
    return [{"id": f"probe-{i:02d}", "prompt": prompt_text(task), "context": CONVENTION, "expect": EXPECT}
            for i, task in enumerate(PROBE_TASKS)]


def write_probes(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in probe_records()))
    return path


if __name__ == "__main__":  # regenerate bench/probes/convention.jsonl
    print(write_probes(Path(__file__).resolve().parent / "probes" / "convention.jsonl"))
