"""`sleep`, `eval`, `report`, `adapters` end to end through typer on the registered app (tiny model)."""

import json
import os
import stat

import pytest
import typer
from typer.testing import CliRunner

from learnagent.cli.learn_cmds import register
from learnagent.core.repository import Repository
from learnagent.core.errors import LearnagentError, ModelNotFound, UsageError
from learnagent.learning.registry import Registry, promoted_adapter
from learnagent.store.episodes import Store

from test_schedule import FAKE_CRONTAB


@pytest.fixture
def cli(git_repo, monkeypatch):
    app = typer.Typer()
    register(app)
    monkeypatch.chdir(git_repo)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, list(args))

    return invoke


def _adapter(reg, tiny_model_dir, parent=None, gap=0.5, episodes=("e1",)):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    version = reg.reserve(parent=parent, method="opsd", base_model="tiny")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    model.save_pretrained(reg.folder(version))
    reg.finish(version, metrics={"gap": gap, "prev_gap": gap + 0.1, "drift": 0.05}, episode_ids=episodes, config={})
    return version


def test_adapters_list_use_rollback(cli, git_repo, tiny_model_dir):
    assert "no adapters yet" in cli("adapters", "list").output
    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        v1 = _adapter(reg, tiny_model_dir, episodes=("a", "b"))
        reg.promote(v1)
        v2 = _adapter(reg, tiny_model_dir, parent=v1, gap=0.3)
        reg.reject(v2, "held-out gap not below")
    out = cli("adapters", "list")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    row1 = next(ln for ln in lines if ln.strip("│ ").startswith("v0001"))
    assert "promoted" in row1 and " 2 " in row1 and "0.5000" in row1 and "0.0500" in row1
    row2 = next(ln for ln in lines if ln.strip("│ ").startswith("v0002"))
    assert "rejected" in row2 and "v0001" in row2 and "held-out gap" in row2
    data = json.loads(cli("adapters", "list", "--json").output)
    assert [r["version"] for r in data] == ["v0002", "v0001"]

    out = cli("adapters", "use", "v0002")
    assert out.exit_code == 0 and "now using v0002" in out.output
    assert promoted_adapter(Repository.at(git_repo))[0] == "v0002"
    out = cli("adapters", "rollback")
    assert out.exit_code == 0 and "rolled back to v0001" in out.output
    assert cli("adapters", "rollback").output.strip() == "rolled back to the base model (no adapter)"
    bad = cli("adapters", "rollback")
    assert isinstance(bad.exception, LearnagentError) and "nothing to roll back" in str(bad.exception)
    bad = cli("adapters", "use", "v0099")
    assert isinstance(bad.exception, LearnagentError) and "no adapter 'v0099'" in str(bad.exception)


def test_report_png_and_html(cli, git_repo, tiny_model_dir, tmp_path):
    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        v1 = _adapter(reg, tiny_model_dir, gap=0.9)
        reg.promote(v1)
        v2 = _adapter(reg, tiny_model_dir, parent=v1, gap=0.6)
        reg.promote(v2)
        reg.update_metrics(v2, eval={"variants": {"base": {"adherence": 0.2}, "adapter": {"adherence": 0.6}}})
        reg.update_metrics(v1, code={"variants": {"base": {"nll": 1.25, "exact": 0.1}, "context": {"nll": 0.5,
                                                  "exact": 0.6}, "adapter": {"nll": 0.875, "exact": 0.3}}})
        for adapter, outcome, passed in ((None, "rejected", False), (None, "accepted", True), (v1, "accepted", True),
                                         (v2, "accepted", True), (v2, "edited", False)):
            eid = store.create_episode(reg.repo_id, "task", adapter_version=adapter)
            store.add_test_run(eid, "final", "pytest", 0 if passed else 1, "", 0.1)
            store.set_outcome(eid, outcome)
    png = tmp_path / "curve.png"
    out = cli("report", "--out", str(png))
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "v0002" in out.output and "60%" in out.output  # eval adherence of v0002
    row1 = next(ln for ln in out.output.splitlines() if ln.strip("│ ").startswith("v0001"))
    assert "0.8750" in row1 and "1.2500" in row1 and "30%" in row1 and "10%" in row1  # held-out code, as sleep measured
    listed = next(ln for ln in cli("adapters", "list").output.splitlines() if ln.strip("│ ").startswith("v0001"))
    assert "0.8750" in listed and "30%" in listed
    base_row = next(ln for ln in out.output.splitlines() if ln.strip("│ ").startswith("base "))
    assert "50%" in base_row  # 1 of 2 accepted, 1 of 2 tests passed
    html = tmp_path / "curve.html"
    assert cli("report", "--out", str(html)).exit_code == 0
    text = html.read_text()
    assert "data:image/png;base64," in text and "<td>v0001</td>" in text
    bad = cli("report", "--out", str(tmp_path / "curve.pdf"))
    assert isinstance(bad.exception, UsageError) and ".png or .html" in str(bad.exception)


def test_eval_with_probe_file_json_and_table(cli, tiny_model_dir, tmp_path):
    probes = tmp_path / "p.jsonl"
    probes.write_text(json.dumps({"id": "a", "prompt": "def add(a, b):", "context": "Use type hints.",
                                  "expect": r"[\s\S]*"}) + "\n")
    out = cli("eval", "--probes", str(probes), "--model", f"local:{tiny_model_dir}", "--samples", "2",
              "--max-new-tokens", "4", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["adapter"] is None and set(data["variants"]) == {"base", "context"}
    assert data["variants"]["base"]["adherence"] == 1.0 and data["variants"]["context"]["gap"] == 0.0
    # beside the probes, the repository's held-out code (here its one stand-in held-out file)
    assert set(data["code"]["variants"]) == {"base", "context"} and data["code"]["documents"] == 1
    assert data["code"]["variants"]["base"]["lines"] > 0 and data["code"]["variants"]["base"]["nll"] > 0
    out = cli("eval", "--probes", str(probes), "--model", f"local:{tiny_model_dir}", "--samples", "1",
              "--max-new-tokens", "4", "--no-code")
    assert out.exit_code == 0 and "base + context (ceiling)" in out.output and "internalization" in out.output
    assert "held-out code" not in out.output


def test_eval_without_probes_measures_the_held_out_code(cli, git_repo, tiny_model_dir):
    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        v1 = _adapter(reg, tiny_model_dir)
        reg.promote(v1)
    out = cli("eval", "--model", f"local:{tiny_model_dir}")
    assert out.exit_code == 0, out.output
    assert "held-out code: " in out.output and "base + adapter" in out.output and "next-line exact" in out.output
    assert "drift on unrelated code" in out.output and "probes:" not in out.output
    data = json.loads(cli("eval", "--model", f"local:{tiny_model_dir}", "--json").stdout)
    code = data["code"]
    assert data["adapter"] == v1 and "variants" not in data and set(code["variants"]) == {"base", "context", "adapter"}
    assert code["variants"]["adapter"]["nll"] == pytest.approx(code["variants"]["base"]["nll"])  # a zero LoRA
    assert code["code_drift"] == pytest.approx(0.0, abs=1e-6)
    with Store() as store:  # the learning curve keeps it
        assert Registry(store, Repository.at(git_repo)).get(v1).metrics["eval"]["code"] == code


def test_eval_bad_input(cli, git_repo, tiny_model_dir, tmp_path):
    probes = tmp_path / "p.jsonl"
    probes.write_text('{"id": "a", "prompt": "x", "context": "c"}\n{"id": 3}\n')
    bad = cli("eval", "--probes", str(probes), "--model", f"local:{tiny_model_dir}")
    assert isinstance(bad.exception, UsageError) and str(bad.exception).startswith(f"{probes}:2: 'id'")
    bad = cli("eval", "--model", f"local:{tiny_model_dir}", "--no-code")
    assert isinstance(bad.exception, UsageError) and "nothing to measure" in str(bad.exception)
    from conftest import git

    git(git_repo, "rm", "-q", "test_calc.py")  # one committed code file: nothing can be held out
    git(git_repo, "commit", "-q", "-m", "one file")
    bad = cli("eval", "--model", f"local:{tiny_model_dir}")
    assert isinstance(bad.exception, UsageError) and "no held-out code" in str(bad.exception)
    probes.write_text('{"id": "a", "prompt": "x", "context": "c"}\n')
    bad = cli("eval", "--probes", str(probes), "--model", f"local:{tiny_model_dir}", "--adapter", "v0007")
    assert isinstance(bad.exception, LearnagentError) and "no adapter 'v0007'" in str(bad.exception)
    assert cli("eval", "--samples", "0").exit_code == 2  # typer range check


def test_sleep_refuses_a_remote_model_and_reports_nothing_new(cli, tiny_model_dir):
    bad = cli("sleep", "--model", "litellm:openai/gpt-4o")
    assert isinstance(bad.exception, ModelNotFound) and "sleep trains a local model" in str(bad.exception)
    out = cli("sleep", "--model", f"local:{tiny_model_dir}")
    assert out.exit_code == 0 and "nothing new to learn yet" in out.output
    assert cli("sleep", "--method", "rl", "--model", f"local:{tiny_model_dir}").exception is not None
    bad = cli("sleep", "--at", "03:00")
    assert isinstance(bad.exception, UsageError) and "--install-schedule" in str(bad.exception)


def test_sleep_install_and_uninstall_schedule(cli, git_repo, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "crontab").write_text(FAKE_CRONTAB)
    (bindir / "crontab").chmod(0o755)
    table = tmp_path / "table"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CRON_TABLE", str(table))
    out = cli("sleep", "--install-schedule", "--at", "01:15")
    assert out.exit_code == 0 and "installed nightly sleep (cron)" in out.output
    assert table.read_text().startswith("15 1 * * * cd ")
    assert "already installed" in cli("sleep", "--install-schedule", "--at", "01:15").output
    assert "removed nightly sleep" in cli("sleep", "--uninstall-schedule").output
    assert table.read_text() == ""
    bad = cli("sleep", "--install-schedule", "--at", "1pm")
    assert isinstance(bad.exception, UsageError)


# ---------------------------------------------------------------- sleep with the real trainer (tiny model)

FAST = dict(samples_per_prompt=1, max_new_tokens=6, rank=4, low_priority=False, checkpoint_every=1)


def _history_episodes(store, repo_id, n_train=3):
    """History episodes with chosen ids: `n_train` trained on and exactly one held out."""
    from learnagent.learning.pairs import is_heldout

    ids, held, i = [], None, 0
    while len(ids) < n_train or held is None:
        eid = f"ep{i:04d}"
        i += 1
        if is_heldout(eid, 0.2):
            held = held or eid
        elif len(ids) < n_train:
            ids.append(eid)
    for eid in ids + [held]:
        store.create_episode(repo_id, f"add helper {eid}", source="history", episode_id=eid)
        store.finish_episode(eid, "finished", final_diff=f"--- a/calc.py\n+++ b/calc.py\n+def helper_{eid}():\n"
                                                         f"+    return 1\n")
    return ids, held


def test_sleep_trains_gates_registers_and_then_has_nothing_new(cli, git_repo, tiny_model_dir):
    from learnagent.learning.gate import GateConfig
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night

    with Store() as store:
        train_ids, held = _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    out = cli("sleep", "--dry-run", "--model", f"local:{tiny_model_dir}")
    assert out.exit_code == 0 and "would train (next version) with opsd" in out.output
    assert "3 episodes" in out.output and "hold out 1" in out.output
    assert promoted_adapter(Repository.at(git_repo)) is None and not list(Repository.at(git_repo).adapters_dir.glob("v*"))

    opts = SleepOptions(steps=2, model=f"local:{tiny_model_dir}", train_overrides=FAST,
                        gate=GateConfig(samples=1, max_new_tokens=6, drift_max_new_tokens=6))
    result = sleep_night(Repository.at(git_repo), opts, train_progress=False)
    assert result.status in ("promoted", "rejected"), result.message
    assert result.version == "v0001" and result.train_episodes == 3 and result.heldout_episodes == 1
    assert result.train["steps"] == 2 and result.gate.heldout == 1
    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        row = reg.get("v0001")
        assert row.status == result.status and row.reason == result.gate.reason
        assert reg.episodes_of("v0001") == sorted(train_ids)  # lineage: trained ones, not the held-out
        assert row.metrics["gap"] == result.gate.gap and row.metrics["heldout_ids"] == [held]
    assert (promoted_adapter(Repository.at(git_repo)) or (None,))[0] == ("v0001" if result.status == "promoted" else None)
    assert not (Repository.at(git_repo).adapters_dir / "v0001" / "checkpoint").exists()

    again = sleep_night(Repository.at(git_repo), opts, train_progress=False)
    assert again.status == "nothing-new", again.message


def test_interrupted_sleep_resumes_into_the_same_version(git_repo, tiny_model_dir):
    from learnagent.learning.gate import GateConfig
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night

    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    gate = GateConfig(samples=1, max_new_tokens=6, drift_max_new_tokens=6)
    first = sleep_night(Repository.at(git_repo), SleepOptions(steps=3, model=f"local:{tiny_model_dir}", max_minutes=1e-6,
                                             train_overrides=FAST, gate=gate), train_progress=False)
    assert first.status == "interrupted" and first.version == "v0001" and first.train["steps"] == 1
    assert (Repository.at(git_repo).adapters_dir / "v0001" / "checkpoint" / "state.pt").is_file()
    second = sleep_night(Repository.at(git_repo), SleepOptions(steps=3, model=f"local:{tiny_model_dir}", train_overrides=FAST,
                                              gate=gate), train_progress=False)
    assert second.version == "v0001" and second.status in ("promoted", "rejected")
    assert second.train["resumed_from"] == 1 and second.train["steps"] == 3


def test_a_sleep_out_of_time_after_enough_steps_gates_what_it_learnt(git_repo, tiny_model_dir):
    """--max-minutes (here the same limit through `time_up`) that ends training after at least
    PARTIAL_MIN_STEPS steps: the adapter so far is gated and registered, not left for another night;
    fewer steps: interrupted, and the next sleep resumes it."""
    import itertools

    from learnagent.learning.gate import GateConfig
    from learnagent.learning.sleep import PARTIAL_MIN_STEPS, SleepOptions
    from learnagent.services.sleep_night import sleep_night

    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    opts = SleepOptions(steps=PARTIAL_MIN_STEPS + 6, model=f"local:{tiny_model_dir}", train_overrides=FAST,
                        gate=GateConfig(samples=1, max_new_tokens=6, drift_max_new_tokens=6))
    calls = itertools.count(1)  # asked after every step but the last
    short = sleep_night(Repository.at(git_repo), opts, train_progress=False, time_up=lambda: next(calls) >= PARTIAL_MIN_STEPS - 1)
    assert short.status == "interrupted" and short.train["steps"] == PARTIAL_MIN_STEPS - 1, short.message
    assert (Repository.at(git_repo).adapters_dir / "v0001" / "checkpoint" / "state.pt").is_file()
    calls = itertools.count(1)
    done = sleep_night(Repository.at(git_repo), opts, train_progress=False, time_up=lambda: next(calls) >= 2)  # resumed: 9 steps
    assert done.version == "v0001" and done.status in ("promoted", "rejected"), done.message
    assert done.train["resumed_from"] == PARTIAL_MIN_STEPS - 1 and done.train["steps"] == PARTIAL_MIN_STEPS + 1
    assert done.train["target_steps"] == PARTIAL_MIN_STEPS + 6 and done.gate is not None
    assert f"(trained {PARTIAL_MIN_STEPS + 1} of {PARTIAL_MIN_STEPS + 6} planned steps: time was up)" in done.message
    assert not (Repository.at(git_repo).adapters_dir / "v0001" / "checkpoint").exists()
    with Store() as store:
        row = Registry(store, Repository.at(git_repo)).get("v0001")
    assert row.status == done.status and row.metrics["train"]["steps"] == PARTIAL_MIN_STEPS + 1
