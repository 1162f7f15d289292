"""`sleep` as a persisted state machine (services/sleep_night.py, store/sleep_steps.py): every step
leaves one row, and a sleep stopped after any step is taken up by the next one from that row.

Stops are real exceptions raised inside the step that follows (the SIGKILL trials of
tests/test_crash_safety.py kill real processes at random moments; these stop at each boundary).
"""

import dataclasses

import pytest

from learnagent.core.repository import Repository
from learnagent.learning import gate as gate_mod
from learnagent.learning import registry
from learnagent.learning.gate import GateConfig
from learnagent.learning.registry import Registry, promoted_adapter
from learnagent.learning.sleep import SleepOptions
from learnagent.runtime.identity import adapter_base, base_identity
from learnagent.services.sleep_night import Night, settle, sleep_night
from learnagent.store.episodes import Store
from learnagent.store.sleep_steps import STATES, SleepSteps

from test_sleep_cli import FAST, _adapter, _history_episodes

GATE = GateConfig(samples=1, max_new_tokens=6, drift_max_new_tokens=6)


class Stop(Exception):
    """A sleep stopped between two steps."""


def _opts(tiny_model_dir, **kw):
    return SleepOptions(steps=2, model=f"local:{tiny_model_dir}", train_overrides=FAST, gate=GATE, **kw)


def _states(repo, version):
    with Store() as store:
        return [s.state for s in SleepSteps(store.conn, store.ensure_repo(Repository.at(repo))).history(version)]


def _raise(*_a, **_k):
    raise Stop()


def test_a_night_records_each_transition_once_in_order(git_repo, tiny_model_dir):
    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    said = []
    result = sleep_night(Repository.at(git_repo), _opts(tiny_model_dir), progress=said.append, train_progress=False)
    assert result.status in ("promoted", "rejected"), result.message
    assert _states(git_repo, "v0001") == list(STATES)
    with Store() as store:
        steps = SleepSteps(store.conn, store.ensure_repo(Repository.at(git_repo))).history("v0001")
        row = Registry(store, Repository.at(git_repo)).get("v0001")
    data = {s.state: s.data for s in steps}
    assert data["reserved"] == {"parent": None, "promoted": None, "method": "opsd", "model": f"local:{tiny_model_dir}"}
    assert data["planned"]["train"] == row.metrics["considered"] and data["planned"]["steps"] == 2
    assert data["trained"]["stats"]["steps"] == 2 and data["trained"]["partial"] is False
    assert data["gated"]["metrics"] == row.metrics  # what was sealed is what the gate recorded
    assert data["decided"] == {"status": result.status, "reason": row.reason}
    assert not (Repository.at(git_repo).adapters_dir / "v0001" / "plan.json").exists()  # the split lives in the store
    # sealed with the base it belongs to (issue 12): loading it on another base is refused
    assert adapter_base(Repository.at(git_repo).adapters_dir / "v0001") == base_identity(tiny_model_dir)


def test_stopped_after_training_the_next_sleep_gates_without_training_again(git_repo, tiny_model_dir, monkeypatch):
    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    with monkeypatch.context() as m, pytest.raises(Stop):
        m.setattr("learnagent.learning.gate.run_gate", _raise)
        sleep_night(Repository.at(git_repo), _opts(tiny_model_dir), train_progress=False)
    assert _states(git_repo, "v0001") == ["reserved", "planned", "trained"]
    monkeypatch.setattr("learnagent.learning.opsd.train_opsd", _raise)  # training again would stop it
    said = []
    result = sleep_night(Repository.at(git_repo), _opts(tiny_model_dir), progress=said.append, train_progress=False)
    assert result.version == "v0001" and result.status in ("promoted", "rejected"), result.message
    assert result.train["steps"] == 2 and result.gate is not None
    assert "resuming interrupted candidate v0001" in said and not any(m.startswith("training") for m in said)
    assert _states(git_repo, "v0001") == list(STATES)


@pytest.mark.parametrize("stop_at", ["metrics-written", "pointer-replaced"])
def test_stopped_after_the_gate_the_next_sleep_seals_and_decides_from_the_recorded_verdict(
        git_repo, tiny_model_dir, monkeypatch, stop_at):
    """Stopped inside `seal` (after metrics.json) or inside `decide` (after the pointer moved):
    the next sleep finishes the candidate from its rows; the gate does not run again."""
    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    real_decide = gate_mod.decide  # the verdict forced to "accepted", so that promotion is reached
    opts = _opts(tiny_model_dir)
    with monkeypatch.context() as m, pytest.raises(Stop):
        m.setattr(gate_mod, "decide", lambda *a, **k: dataclasses.replace(real_decide(*a, **k), accepted=True,
                                                                         reason="accepted for this test"))
        m.setattr(registry, "_checkpoint", lambda name: _raise() if name == stop_at else None)
        sleep_night(Repository.at(git_repo), opts, train_progress=False)
    assert _states(git_repo, "v0001") == (["reserved", "planned", "trained", "gated"] if stop_at == "metrics-written"
                                          else ["reserved", "planned", "trained", "gated", "sealed"])
    monkeypatch.setattr("learnagent.learning.gate.run_gate", _raise)
    said = []
    again = sleep_night(Repository.at(git_repo), opts, progress=said.append, train_progress=False)
    assert _states(git_repo, "v0001") == list(STATES)
    with Store() as store:
        row = Registry(store, Repository.at(git_repo)).get("v0001")
    assert row.metrics["reason"] == "accepted for this test" and row.status == "promoted"
    assert promoted_adapter(Repository.at(git_repo))[0] == "v0001"
    if stop_at == "metrics-written":
        assert said[0] == "promoted v0001, which passed the gate before the last sleep was interrupted"
    assert again.status == "nothing-new", again.message  # its episodes are learnt now



def _night(repo, said, method="opsd"):
    store = Store()
    reg = Registry(store, Repository.at(repo))
    return Night(repo, SleepOptions(method=method), reg, SleepSteps(store.conn, reg.repo_id), said.append, 0.0,
                 "tiny", ""), store


def test_settle_decides_candidates_sealed_before_the_state_table(git_repo, tiny_model_dir):
    """Candidates from before the table (no rows): a sealed one is decided from the metrics it was
    sealed with, once; its gate result is stale when another adapter was promoted meanwhile."""
    said = []
    n, store = _night(git_repo, said)
    reg = n.reg
    with Store() as other:
        r = Registry(other, Repository.at(git_repo))
        v1 = _adapter(r, tiny_model_dir)
        r.update_metrics(v1, accepted=True, reason="gap 0.1 < 0.5")
        v2 = _adapter(r, tiny_model_dir)  # gated against the base, which is stale once v1 is promoted
        r.update_metrics(v2, accepted=True, reason="gap 0.2 < 0.5")
        v3 = r.reserve(parent=None, method="opsd", base_model="tiny")  # still training: left for resume
    settle(n)
    assert promoted_adapter(Repository.at(git_repo))[0] == v1 and reg.get(v1).status == "promoted"
    assert reg.get(v2).status == "rejected"
    assert reg.get(v2).reason == "passed the gate against the base model, which is no longer the promoted one"
    assert reg.get(v3).status == "candidate" and reg.resumable().version == v3
    assert said == [f"promoted {v1}, which passed the gate before the last sleep was interrupted"]
    assert _states(git_repo, v1) == ["reserved", "gated", "sealed", "decided"]
    assert _states(git_repo, v3) == ["reserved"]
    settle(n)  # decided once: nothing more to say
    assert len(said) == 1
    store.close()


def test_an_unfinished_candidate_of_another_method_is_abandoned(git_repo, tiny_model_dir):
    with Store() as store:
        _history_episodes(store, store.ensure_repo(Repository.at(git_repo)))
    first = sleep_night(Repository.at(git_repo), _opts(tiny_model_dir, max_minutes=1e-6, method="sft"), train_progress=False)
    assert first.status == "interrupted" and _states(git_repo, "v0001") == ["reserved", "planned"]
    result = sleep_night(Repository.at(git_repo), _opts(tiny_model_dir), train_progress=False)
    assert result.version == "v0002" and result.status in ("promoted", "rejected"), result.message
    with Store() as store:
        row = Registry(store, Repository.at(git_repo)).get("v0001")
    assert row.status == "rejected" and row.reason.startswith("abandoned:")
    assert _states(git_repo, "v0001") == ["reserved", "planned", "decided"]


def test_an_unfinished_candidate_is_resumed_only_by_a_night_that_would_make_it(git_repo):
    """Same parent, method and model: resumed; the newest such one only, older ones and any other
    are abandoned (decided, rejected) so that none is left a candidate forever."""
    from learnagent.services.sleep_night import _resumable

    said = []
    n, store = _night(git_repo, said)
    for model, method in (("tiny", "opsd"), ("other-model", "opsd"), ("tiny", "sft"), ("tiny", "opsd")):
        v = n.reg.reserve(parent=None, method=method, base_model=model)
        n.steps.record(v, "reserved", {"parent": None, "promoted": None, "method": method, "model": model})
        n.steps.record(v, "planned", {"train": ["e1"], "heldout": [], "steps": 2})
    resume = _resumable(n, None)
    assert resume.version == "v0004" and resume.state == "planned" and resume.plan["train"] == ["e1"]
    for v in ("v0001", "v0002", "v0003"):
        assert n.reg.get(v).status == "rejected" and n.reg.get(v).reason.startswith("abandoned:"), v
        assert _states(git_repo, v)[-1] == "decided"
    assert n.reg.get("v0004").status == "candidate" and _states(git_repo, "v0004") == ["reserved", "planned"]
    store.close()
