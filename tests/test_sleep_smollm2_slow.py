"""End to end on SmolLM2-135M: history with a distinctive convention -> sleep -> eval shows it learnt.

The convention: every function has type hints on its arguments and return value. Measured on the
base model (4 prompts x 3 samples, 40 tokens, temperature 1): without the convention in its
context it writes a hinted `def` 0% of the time, with it ~50% — so there is something for the
adapter to internalise, and the regex cannot be met by chance.
The repository's commits become episodes through the real `history import`; `sleep` trains, gates
and promotes through the real CLI code; `eval` then compares base, base+context and base+adapter.
"""

import json

import pytest

from learnagent.core.modelhub import installed_default_path

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
PROBES = ["Write a Python function that adds two numbers.", "Write a Python function that reverses a string.",
          "Write a Python function that returns the maximum of a list.",
          "Write a Python function that checks whether a number is even."]
HINTED_DEF = r"def \w+\([^)]*:\s*\w+[^)]*\)\s*->"


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
    from learnagent.learning.sleep import SleepOptions, run_sleep
    from learnagent.store.episodes import Store
    from learnagent.store.history import import_history

    with Store() as store:
        report = import_history(store, convention_repo)
    assert len(report.imported) == len(FUNCS) + 1  # + the AGENTS.md commit (the root commit is skipped)

    # The on-policy objective this test was written for (sleep's default before docs/OPSD.md "Learning
    # that sticks"): today's gate promotes on the on-policy distillation gap of held-out CHAT pairs,
    # and with today's default (real text, NLL + forward KL, anchor retention) this run's v0001 was
    # rejected (gap 0.0438 vs the base's 0.0434, 2026-11-30). The behavioural gate (issue 9) replaces
    # that measure; until then this test keeps checking the pipeline with the objective the gate reads.
    from learnagent.learning.train_common import ON_POLICY

    on_policy = ON_POLICY | dict(skip_first=2, kl_clip=2.0, lambda_ret=0.1, retention="student")
    opts = SleepOptions(steps=16, train_overrides=dict(samples_per_prompt=2, max_new_tokens=32, lr=2e-4,
                                                        low_priority=False, checkpoint_every=0, **on_policy),
                        gate=GateConfig(samples=2, max_new_tokens=32, drift_max_new_tokens=16))
    result = run_sleep(convention_repo, opts, train_progress=False)
    print("sleep:", result.status, result.message)
    assert result.status == "promoted", result.message

    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "context": CONVENTION, "expect": HINTED_DEF})
                              + "\n" for i, p in enumerate(PROBES)))
    app = typer.Typer()
    register(app)
    monkeypatch.chdir(convention_repo)
    out = CliRunner().invoke(app, ["eval", "--probes", str(probes), "--samples", "3", "--max-new-tokens", "40",
                                   "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    v = data["variants"]
    print("eval:", json.dumps(v), data["internalization"])
    assert data["adapter"] == result.version  # eval picked the promoted adapter by itself
    assert v["context"]["adherence"] > v["base"]["adherence"], "the probes must measure something the context teaches"
    assert v["adapter"]["adherence"] > v["base"]["adherence"], (
        f"adapter adherence {v['adapter']['adherence']} not above base {v['base']['adherence']} "
        f"(context ceiling {v['context']['adherence']})")
    assert v["adapter"]["gap"] < v["base"]["gap"]
