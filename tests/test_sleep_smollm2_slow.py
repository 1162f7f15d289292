"""End to end on SmolLM2-135M: history with a distinctive convention -> sleep -> eval shows it learnt.

The convention: every function has type hints on its arguments and return value. The probes are
the raw-text starts of modules no commit has (`# add.py`, mode text); the test checks that the
context teaches the convention (base + context above base) and that the adapter, without the
context, writes it more often than the base model, and that it makes the held-out files' code
likelier. Sleep runs its default method and gate (the behavioural gate: held-out code NLL).
The repository's commits become episodes through the real `history import`; `sleep` trains, gates
and promotes through the real CLI code; `eval` then compares base, base+context and base+adapter.
"""

import json

import pytest

from learnagent.core.modelhub import installed_default_path
from learnagent.core.repository import Repository

pytestmark = pytest.mark.slow

CONVENTION = ("Repository convention: every function has type hints on its arguments and return value. "
              "Example:\n```python\ndef cube(n: int) -> int:\n    return n ** 3\n```\n")
FUNCS = [("subtracts two numbers", "subtract", "a: int, b: int", "int", "a - b"),
         ("multiplies two numbers", "multiply", "a: int, b: int", "int", "a * b"),
         ("divides two numbers", "divide", "a: float, b: float", "float", "a / b"),
         ("returns the square of a number", "square", "n: int", "int", "n * n"),
         ("negates a number", "negate", "n: int", "int", "-n"),
         ("returns the absolute value of a number", "absolute", "n: int", "int", "abs(n)"),
         ("doubles a number", "double", "n: int", "int", "2 * n"),
         ("halves a number", "halve", "n: float", "float", "n / 2"),
         ("returns the length of a string", "length", "s: str", "int", "len(s)"),
         ("upper-cases a string", "shout", "s: str", "str", "s.upper()"),
         ("joins two strings", "join_two", "a: str, b: str", "str", "a + b"),
         ("returns the first item of a list", "first", "items: list", "object", "items[0]"),
         ("sums a list of numbers", "total", "items: list", "int", "sum(items)"),
         ("checks whether a number is positive", "is_positive", "n: int", "bool", "n > 0"),
         ("returns the last item of a list", "last", "items: list", "object", "items[-1]"),
         ("counts the words in a string", "word_count", "s: str", "int", "len(s.split())"),
         ("returns the smaller of two numbers", "smaller", "a: int, b: int", "int", "min(a, b)"),
         ("lower-cases a string", "whisper", "s: str", "str", "s.lower()"),
         ("checks whether a string is empty", "is_empty", "s: str", "bool", "not s"),
         ("triples a number", "triple", "n: int", "int", "3 * n")]
HINTED_DEF = r"def \w+\([^)]*:\s*\w+[^)]*\)\s*->"
TEXT_PROBES = ["add", "reverse", "maximum", "is_even"]  # modules no commit has


@pytest.fixture
def convention_repo(tmp_path):
    from conftest import git

    git_repo = tmp_path / "conventions"
    git_repo.mkdir()
    git(git_repo, "init", "-q", "-b", "main")

    def commit(message, n):
        # fixed dates: the same commit ids, so the same (id-hashed) held-out split, on every run
        date = {"GIT_AUTHOR_DATE": f"2026-01-01T10:{n:02d}:00Z", "GIT_COMMITTER_DATE": f"2026-01-01T10:{n:02d}:00Z"}
        git(git_repo, "add", ".")
        git(git_repo, "commit", "-q", "-m", message, env=date)

    (git_repo / "README.md").write_text("Small helpers.\n")
    commit("Start the repository", 0)
    (git_repo / "AGENTS.md").write_text(CONVENTION)
    commit("Write down the repository's conventions", 1)
    for n, (what, name, args, ret, body) in enumerate(FUNCS, 2):
        (git_repo / f"{name}.py").write_text(f"def {name}({args}) -> {ret}:\n    return {body}\n")
        commit(f"Write a Python function that {what}", n)
    return git_repo


@pytest.mark.skipif(installed_default_path() is None, reason="SmolLM2 not installed (run `learnagent model install`)")
def test_history_sleep_eval_shows_the_convention_learnt(convention_repo, monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    from learnagent.cli.learn_cmds import register
    from learnagent.learning.gate import GateConfig
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night
    from learnagent.store.episodes import Store
    from learnagent.store.history import import_history

    with Store() as store:
        report = import_history(store, Repository.at(convention_repo))
    assert len(report.imported) == len(FUNCS) + 1  # + the AGENTS.md commit (the root commit is skipped)

    # sleep's default method and gate (docs/OPSD.md, docs/sleep.md), only fewer steps than the plan's
    opts = SleepOptions(steps=16, train_overrides=dict(low_priority=False, checkpoint_every=0),
                        gate=GateConfig(samples=2, max_new_tokens=32, drift_max_new_tokens=16))
    result = sleep_night(Repository.at(convention_repo), opts, train_progress=False)
    print("sleep:", result.status, result.message)
    assert result.status == "promoted", result.message

    # raw-text probes: the start of a new module of this repository (no chat template), as a completion
    # engine sees a file; the context (the ceiling) is the conventions file and one of the repository's
    # files, each after its path line, as sleep's retrieved contexts read (first run with the conventions
    # alone: base 1/12, context 2/12, adapter 10/12 hinted defs: too thin a margin for the ceiling check;
    # with the file: base 1/12, context 9/12, adapter 10/12, 2026-11-30, 6.4 min at load 9)
    context = f"# AGENTS.md\n{CONVENTION}\n# square.py\ndef square(n: int) -> int:\n    return n * n"
    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps({"id": name, "prompt": f"# {name}.py", "context": context,
                                          "expect": HINTED_DEF, "mode": "text"}) + "\n"
                              for name in TEXT_PROBES))
    app = typer.Typer()
    register(app)
    monkeypatch.chdir(convention_repo)
    out = CliRunner().invoke(app, ["eval", "--probes", str(probes), "--samples", "3", "--max-new-tokens", "40",
                                   "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    v, code = data["variants"], data["code"]["variants"]
    print("eval:", json.dumps(v), data["internalization"], "code:", json.dumps(code))
    assert data["adapter"] == result.version  # eval picked the promoted adapter by itself
    assert v["context"]["adherence"] > v["base"]["adherence"], "the probes must measure something the context teaches"
    assert v["adapter"]["adherence"] > v["base"]["adherence"], (
        f"adapter adherence {v['adapter']['adherence']} not above base {v['base']['adherence']} "
        f"(context ceiling {v['context']['adherence']})")
    # what it writes on the held-out files: the user's code is likelier without context than for the base
    assert code["adapter"]["nll"] < code["base"]["nll"]
