"""Adapter registry: versions, lineage, atomic promotion under injected crashes, rollback, taint."""

import json

import pytest

from learnagent.core.errors import LearnagentError
from learnagent.learning import registry
from learnagent.learning.registry import Registry, list_adapters, promoted_adapter
from learnagent.store.episodes import Store
from learnagent.core.repository import Repository

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL


@pytest.fixture(scope="module")
def lora_factory(tiny_model_dir):
    """Saves a real LoRA adapter (peft save_pretrained) of the tiny model into a folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))

    def save(folder, fill=0.0):
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.fill_(fill)
        peft_model.save_pretrained(folder)

    return save


@pytest.fixture
def reg(git_repo):
    store = Store()
    yield Registry(store, Repository.at(git_repo))
    store.close()


def trained(reg, lora_factory, parent=None, episodes=("e1",), fill=0.0):
    version = reg.reserve(parent=parent, method="opsd", base_model="tiny")
    lora_factory(reg.folder(version), fill)
    reg.finish(version, metrics={"gap": 0.5, "drift": 0.1}, episode_ids=episodes, config={"steps": 3})
    return version


def test_reserve_finish_promote_and_list(reg, lora_factory, git_repo):
    assert promoted_adapter(Repository.at(git_repo)) is None
    v1 = trained(reg, lora_factory, episodes=("e1", "e2"))
    assert v1 == "v0001"
    assert promoted_adapter(Repository.at(git_repo)) is None  # finished but not promoted
    reg.promote(v1)
    assert promoted_adapter(Repository.at(git_repo)) == ("v0001", Repository.at(git_repo).adapters_dir / "v0001")
    v2 = trained(reg, lora_factory, parent=v1, episodes=("e3",))
    assert v2 == "v0002"
    reg.reject(v2, "gap not below")
    rows = {r.version: r for r in list_adapters(Repository.at(git_repo), reg.store)}
    assert rows["v0001"].status == "promoted" and rows["v0001"].episodes == 2
    assert rows["v0002"].status == "rejected" and rows["v0002"].reason == "gap not below"
    assert rows["v0002"].metrics["gap"] == 0.5
    lineage = json.loads((reg.folder(v2) / "lineage.json").read_text())
    assert lineage["parent"] == "v0001" and lineage["episodes"] == ["e3"] and lineage["method"] == "opsd"
    assert reg.trained_episode_ids(v2) == {"e1", "e2", "e3"}
    # list_adapters opens the default store when none is given
    assert [r.version for r in list_adapters(Repository.at(git_repo))] == ["v0002", "v0001"]


def test_resumable_candidate_keeps_its_version(reg, lora_factory):
    v1 = reg.reserve(parent=None, method="opsd", base_model="tiny")
    assert reg.resumable().version == v1  # nothing saved yet: resume into the same folder
    lora_factory(reg.folder(v1))
    reg.finish(v1, metrics={}, episode_ids=["e1"], config={})
    assert reg.resumable() is None
    assert reg.reserve(parent=v1, method="opsd", base_model="tiny") == "v0002"


def test_promote_refuses_incomplete_folder(reg, git_repo):
    v1 = reg.reserve(parent=None, method="opsd", base_model="tiny")
    with pytest.raises(LearnagentError, match="not complete"):
        reg.promote(v1)
    assert promoted_adapter(Repository.at(git_repo)) is None


STEPS_FINISH = ["tmp-written:metrics.json", "metrics-written", "tmp-written:lineage.json", "lineage-written"]
STEPS_PROMOTE = ["folder-synced", "tmp-written:PROMOTED", "pointer-replaced"]


@pytest.mark.parametrize("step", STEPS_FINISH + STEPS_PROMOTE)
def test_crash_at_any_step_leaves_a_loadable_adapter(reg, lora_factory, git_repo, tiny_model_dir, monkeypatch,
                                                     step):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    v1 = trained(reg, lora_factory)
    reg.promote(v1)

    def crash(name):
        if name == step:
            raise KeyboardInterrupt(f"crash at {name}")

    monkeypatch.setattr(registry, "_checkpoint", crash)
    v2 = reg.reserve(parent=v1, method="opsd", base_model="tiny")
    lora_factory(reg.folder(v2), fill=0.01)
    with pytest.raises(KeyboardInterrupt):
        reg.finish(v2, metrics={"gap": 0.1}, episode_ids=["e9"], config={})
        reg.promote(v2)
    monkeypatch.setattr(registry, "_checkpoint", lambda name: None)

    current = promoted_adapter(Repository.at(git_repo))
    # before the rename the old adapter is loaded, after it the new one; never nothing
    expected = "v0002" if step == "pointer-replaced" else "v0001"
    assert current is not None and current[0] == expected
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    PeftModel.from_pretrained(base, current[1])  # really loadable
    # the table agrees with the pointer once read, whatever step crashed
    statuses = {r.version: r.status for r in reg.list()}
    assert statuses[expected] == "promoted"
    assert list(statuses.values()).count("promoted") == 1
    # and the run can carry on: finishing (again) and promoting works
    if step in STEPS_FINISH:
        reg.finish(v2, metrics={"gap": 0.1}, episode_ids=["e9"], config={})
    reg.promote(v2)
    assert promoted_adapter(Repository.at(git_repo))[0] == "v0002"


def test_use_and_rollback(reg, lora_factory, git_repo):
    v1, v2, v3 = (trained(reg, lora_factory) for _ in range(3))
    reg.promote(v1)
    reg.promote(v2)
    reg.use(v3)
    assert promoted_adapter(Repository.at(git_repo))[0] == v3
    assert reg.rollback() == v2
    assert promoted_adapter(Repository.at(git_repo))[0] == v2
    assert reg.get(v3).status == "retired" and "rolled back" in reg.get(v3).reason
    assert reg.rollback() == v1  # a second rollback goes further back, it does not bounce
    assert reg.rollback() is None  # back to the base model
    assert promoted_adapter(Repository.at(git_repo)) is None
    with pytest.raises(LearnagentError, match="nothing to roll back"):
        reg.rollback()
    with pytest.raises(LearnagentError, match="no adapter 'v0042'"):
        reg.use("v0042")


def test_deleted_promoted_folder_falls_back_to_history(reg, lora_factory, git_repo):
    import shutil

    v1, v2 = trained(reg, lora_factory), trained(reg, lora_factory)
    reg.promote(v1)
    reg.promote(v2)
    shutil.rmtree(reg.folder(v2))
    assert promoted_adapter(Repository.at(git_repo))[0] == v1


def test_leave_tainted_moves_off_an_adapter_a_team_store_forget_flagged(lora_factory, tmp_path):
    """A developer's `forget` on a team store flags the team's adapters there (services.team.forget_on_team)
    but cannot reach the GPU box's pointer file: the box's next sleep calls leave_tainted first."""
    from learnagent.core.repository import StoredRepository
    from learnagent.services.team import forget_on_team
    from learnagent.store import team_rows

    with Store(tmp_path / "team.db") as team:
        team_rows.ensure_team_repo(team, "acme/api")
        team.conn.execute("INSERT INTO episodes(id, repo_id, task, started_at, author) VALUES (?,?,?,?,?)",
                          ("mine", "acme/api", "t", 1.0, "me@example.com"))
        box = Registry(team, StoredRepository("acme/api", "api"))
        v1 = trained(box, lora_factory, episodes=("other",))
        box.promote(v1)
        v2 = trained(box, lora_factory, parent=v1, episodes=("mine",))
        box.promote(v2)
        assert box.leave_tainted() is None  # nothing flagged: the pointer stays
        assert forget_on_team(team, ["mine"], "me@example.com") == ["mine"]
        assert box.current()[0] == v2  # the laptop's forget flagged it; the box's pointer still names it
        assert box.leave_tainted() == v2
        assert box.current()[0] == v1 and box.get(v2).status == "retired"


def test_mark_tainted_unpromotes_and_taints_descendants(reg, lora_factory, git_repo):
    v1 = trained(reg, lora_factory, episodes=("a",))
    reg.promote(v1)
    v2 = trained(reg, lora_factory, parent=v1, episodes=("secret",))
    reg.promote(v2)
    v3 = trained(reg, lora_factory, parent=v2, episodes=("b",))
    reg.promote(v3)
    assert reg.mark_tainted(["secret"]) == ["v0002", "v0003"]
    assert promoted_adapter(Repository.at(git_repo))[0] == v1
    rows = {r.version: r for r in reg.list()}
    assert rows[v3].tainted and rows[v2].tainted and not rows[v1].tainted
    assert rows[v1].status == "promoted" and rows[v3].status == "retired"
    with pytest.raises(LearnagentError, match="forgotten"):
        reg.use(v3)
