from learnagent.learning.pairs import (Pair, build_pairs, experience_context, is_heldout, lessons,
                                       replay_prompts)
from learnagent.learning.rollout import RETENTION_PROMPTS
from learnagent.store.episodes import Store
from repo_helpers import folder_repository

DIFF = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,5 @@
 def add(a, b):
     return a + b
+
+def sub_values(a, b):
+    return a - b
diff --git a/tests/test_calc.py b/tests/test_calc.py
--- a/tests/test_calc.py
+++ b/tests/test_calc.py
@@ -1 +1,2 @@
+def test_sub_values(): assert sub_values(3, 1) == 2
"""


def _do_episode(store, repo_id, task, outcome="accepted", tests_pass=True, diff=DIFF, meta=None):
    eid = store.create_episode(repo_id, task, meta=meta)
    store.add_message(eid, 0, "system", "You are learnagent. Repo map: calc.py")
    store.add_message(eid, 0, "user", f"Task: {task}")
    seq = store.add_message(eid, 0, "assistant", "<read path=\"calc.py\"/>")
    store.add_model_call(eid, 0, 2, seq, 10, 5, 0.1)
    store.add_message(eid, 1, "user", "calc.py: ...")
    store.add_test_run(eid, "agent", "pytest -q", 1, "E   NameError: name 'sub_values' is not defined", 0.5)
    store.add_test_run(eid, "final", "pytest -q", 0 if tests_pass else 1, "1 passed", 0.5)
    store.finish_episode(eid, "finished", final_diff=diff)
    if outcome != "pending":
        store.set_outcome(eid, outcome)
    return eid


def _store(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "AGENTS.md").write_text("Always add a test next to every new function.\n")
    return store, store.ensure_repo(folder_repository(repo)), repo


def test_pairs_select_good_episodes_and_build_x_and_c(tmp_path):
    store, rid, repo = _store(tmp_path)
    accepted = _do_episode(store, rid, "add subtraction")
    edited = _do_episode(store, rid, "add mul", outcome="edited",
                         meta={"correction": "-def mul(a,b)\n+def multiply(a, b)"})
    pending_ok = _do_episode(store, rid, "pending ok", outcome="pending")
    pending_bad = _do_episode(store, rid, "pending bad", outcome="pending", tests_pass=False)
    rejected = _do_episode(store, rid, "rejected", outcome="rejected")
    empty = _do_episode(store, rid, "no diff", diff="")
    hist = store.create_episode(rid, "Rename helper to snake_case", source="history",
                                meta={"before": {"calc.py": "def addValues(a, b): ..."}})
    store.finish_episode(hist, "finished", final_diff=DIFF)

    train, held = build_pairs(store, rid, conventions_root=repo, heldout_fraction=0.0)
    ids = {p.episode_id for p in train}
    assert held == []
    assert ids == {accepted, edited, pending_ok, hist}
    assert pending_bad not in ids and rejected not in ids and empty not in ids

    by_id = {p.episode_id: p for p in train}
    p = by_id[accepted]
    assert isinstance(p, Pair) and p.target == DIFF.strip()
    # x: the first model call's prompt only (2 messages), no answer, no observation
    assert [m["role"] for m in p.prompt] == ["system", "user"]
    assert p.prompt[1]["content"] == "Task: add subtraction"
    # c: lessons, diff, the failure and its fix, conventions
    assert "sub_values" in p.context and "snake_case" in p.context
    assert "Files changed: calc.py, tests/test_calc.py" in p.context
    assert "NameError" in p.context and "passed after the change" in p.context
    assert "Always add a test" in p.context
    assert "multiply" in by_id[edited].context and "correction" in by_id[edited].context
    # history: x from the commit message and the code before it
    h = by_id[hist]
    assert "Rename helper to snake_case" in h.prompt[-1]["content"]
    assert "def addValues" in h.prompt[-1]["content"]
    store.close()


def test_heldout_split_depends_on_the_id_only(tmp_path):
    store, rid, repo = _store(tmp_path)
    ids = [_do_episode(store, rid, f"task {i}") for i in range(20)]
    train1, held1 = build_pairs(store, rid, heldout_fraction=0.3, seed=0)
    train2, held2 = build_pairs(store, rid, heldout_fraction=0.3, seed=7, exclude_ids=ids[:3])
    h1 = {p.episode_id for p in held1}
    assert h1 == {i for i in ids if is_heldout(i, 0.3)}
    assert {p.episode_id for p in held2} == h1 - set(ids[:3])  # other seed/exclusions: same split
    assert not h1 & {p.episode_id for p in train1 + train2}
    assert 0 < len(h1) < 20
    store.close()


def test_context_respects_its_budget(tmp_path):
    store, rid, repo = _store(tmp_path)
    eid = _do_episode(store, rid, "big", diff=DIFF + "+x = 1\n" * 5000)
    ep = store.get_episode(eid)
    c = experience_context(ep, "conventions " * 2000, max_tokens=256)
    assert len(c) <= 256 * 4
    assert c.startswith("## Lessons")
    assert any("Test command: pytest -q" in line for line in lessons(ep))
    store.close()


def test_replay_prompts_excludes_and_tops_up(tmp_path):
    store, rid, repo = _store(tmp_path)
    a = _do_episode(store, rid, "one")
    _do_episode(store, rid, "two", outcome="rejected")  # any outcome is a fine replay prompt
    prompts = replay_prompts(store, rid, exclude_ids=[a], n=4)
    assert len(prompts) == 4
    assert prompts[0][1]["content"] == "Task: two"
    assert all("Task: one" not in m["content"] for p in prompts for m in p)
    assert prompts[1] == RETENTION_PROMPTS[0]
    store.close()
