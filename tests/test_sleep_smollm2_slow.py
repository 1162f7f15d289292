"""End to end on SmolLM2-135M: commits with a distinctive convention -> sleep -> eval shows it learnt.

The convention: every function name starts with `zq_` (nothing a pretrained model does by itself).
Episodes are the repository's commits (source='history', task = message, final_diff = diff),
inserted through the Store API. After a short sleep, the adapter WITHOUT context must write
`def zq_` more often than the base model does.
"""

import json
import subprocess

import pytest

from learnagent.core.modelhub import installed_default_path

pytestmark = pytest.mark.slow

FUNCS = ["add", "subtract", "multiply", "divide", "power", "modulo", "negate", "absolute", "square", "cube",
         "halve", "double"]


@pytest.fixture
def convention_repo(git_repo):
    from conftest import git

    (git_repo / "AGENTS.md").write_text("Convention: every Python function name starts with zq_ "
                                        "(for example `def zq_add(a, b):`).\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "conventions")
    for name in FUNCS:
        path = git_repo / f"{name}.py"
        path.write_text(f"def zq_{name}(a, b):\n    \"\"\"{name} two numbers.\"\"\"\n    return a\n")
        git(git_repo, "add", ".")
        git(git_repo, "commit", "-q", "-m", f"Add a function to {name} two numbers")
    return git_repo


def _import_commits(store, repo):
    rid = store.ensure_repo(repo)
    log = subprocess.run(["git", "log", "--format=%H%x00%s", "-n", str(len(FUNCS))], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    for line in log.splitlines():
        sha, message = line.split("\0")
        diff = subprocess.run(["git", "show", "--format=", sha], cwd=repo, capture_output=True, text=True,
                              check=True).stdout
        eid = store.create_episode(rid, message, source="history", base_commit=sha, episode_id=f"h{sha[:12]}")
        store.finish_episode(eid, "finished", final_diff=diff)
    return rid


@pytest.mark.skipif(installed_default_path() is None, reason="SmolLM2 not installed (run `learnagent model install`)")
def test_sleep_then_eval_shows_the_convention_learnt(convention_repo, monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    from learnagent.cli.learn_cmds import register
    from learnagent.learning.gate import GateConfig
    from learnagent.learning.sleep import SleepOptions, run_sleep
    from learnagent.store.episodes import Store

    with Store() as store:
        _import_commits(store, convention_repo)
    opts = SleepOptions(steps=12, train_overrides=dict(samples_per_prompt=2, max_new_tokens=24, lr=2e-4,
                                                        low_priority=False, checkpoint_every=0),
                        gate=GateConfig(samples=1, max_new_tokens=24, drift_max_new_tokens=16))
    result = run_sleep(convention_repo, opts, train_progress=False)
    print("sleep:", result.status, result.message, result.train.get("kl_first"), result.train.get("kl_last"))
    assert result.status in ("promoted", "rejected"), result.message

    probes = tmp_path / "probes.jsonl"
    prompts = ["Write a Python function that adds two numbers.", "Write a Python function that reverses a string.",
               "Write a Python function that returns the maximum of a list."]
    probes.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "context": (convention_repo / "AGENTS.md")
                                          .read_text(), "expect": r"def zq_"}) + "\n" for i, p in enumerate(prompts)))
    app = typer.Typer()
    register(app)
    monkeypatch.chdir(convention_repo)
    out = CliRunner().invoke(app, ["eval", "--probes", str(probes), "--adapter", result.version, "--samples", "4",
                                   "--max-new-tokens", "32", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    v = data["variants"]
    print("eval:", json.dumps({k: v[k] for k in v}), data["internalization"])
    assert v["adapter"]["adherence"] > v["base"]["adherence"], (
        f"adapter adherence {v['adapter']['adherence']} not above base {v['base']['adherence']} "
        f"(context ceiling {v['context']['adherence']})")
