"""Attribution of commits to episodes: the diff parser and matcher, then real git workflows with
the hooks installed (commit, edit, partial staging, split hunks, amend, rebase, squash,
cherry-pick, merge, revert, the expiry window)."""


import pytest
from outcome_helpers import episode, events, git, head, old, propose, write

from learnagent.core.githooks import install_hooks
from learnagent.core.repository import Repository
from learnagent.store.attribution import coverage, match_commit, parse_diff, units_of
from learnagent.store.correction import agent_version, file_correction
from learnagent.store.episodes import Store
from learnagent.store.outcomes import expire_stale, load_settings

AGENT_DIFF = """\
diff --git a/calc.py b/calc.py
index 1111111..2222222 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,7 @@
 def add(a, b):
-    return a + b
+    total = a + b
+    return total
+
+
+def sub(a, b):
+    return a - b
diff --git a/notes.md b/notes.md
new file mode 100644
--- /dev/null
+++ b/notes.md
@@ -0,0 +1,2 @@
+-- a line that looks like a header
+}
"""


# ---------------------------------------------------------------- pure parts

def test_parse_diff_files_hunks_and_odd_lines():
    files = parse_diff(AGENT_DIFF + "diff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n")
    assert [(f.old_path, f.new_path, f.binary) for f in files] == [
        ("calc.py", "calc.py", False), (None, "notes.md", False), ("img.png", "img.png", True)]
    assert files[0].lines("-") == ["    return a + b"]
    assert files[1].lines("+") == ["-- a line that looks like a header", "}"]  # not a `---` header
    units = units_of(AGENT_DIFF)
    assert [(u.sign, u.norm) for u in units][:3] == [("-", "return a + b"), ("+", "total = a + b"), ("+", "return total")]
    assert not units[-1].significant  # "}" carries no evidence on its own


def _commit_patch(path, added, removed=()):
    body = "".join(f"-{x}\n" for x in removed) + "".join(f"+{x}\n" for x in added)
    return parse_diff(f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
                      f"@@ -1,{len(removed)} +1,{len(added)} @@\n{body}")


def test_match_is_tolerant_of_moved_and_edited_lines():
    units = units_of(AGENT_DIFF)
    # the user committed calc.py with the hunk moved down and `sub` renamed: order does not matter
    patches = _commit_patch("calc.py", ["def subtract(a, b):", "    return a - b", "    total = a + b",
                                        "    return total"], ["    return a + b"])
    m = match_commit(units, patches)
    assert m.evidence
    by_norm = {units[i].norm for i in m.exact}
    assert {"total = a + b", "return total", "return a - b", "return a + b"} <= by_norm
    assert [units[i].norm for i in m.edited] == ["def sub(a, b):"]
    assert m.edited[[i for i in m.edited][0]] == "def subtract(a, b):"


def test_a_coincidental_common_line_is_not_attributed():
    units = units_of(AGENT_DIFF)
    m = match_commit(units, _commit_patch("other.py", ["    return total", "x = 1"]))
    assert not m.evidence and not m.exact and not m.moved


def test_coverage_is_a_union_over_commits():
    units = units_of(AGENT_DIFF)
    first = match_commit(units, _commit_patch("calc.py", ["    total = a + b", "    return total"], ["    return a + b"]))
    cov = coverage(units, [first.to_json(), first.to_json()])  # the same commit seen twice
    assert cov.covered == 3 and cov.total == 6 and not cov.all_exact
    second = match_commit(units, _commit_patch("calc.py", ["def sub(a, b):", "    return a - b"]))
    notes = match_commit(units, _commit_patch("notes.md", ["-- a line that looks like a header", "}"]))
    assert notes.evidence
    cov = coverage(units, [first.to_json(), second.to_json(), notes.to_json()])
    assert cov.all_exact and cov.fraction == 1.0


def test_correction_keeps_only_changes_near_the_agents_lines():
    base = [f"line {i}" for i in range(30)]
    fp = parse_diff("--- a/f\n+++ b/f\n@@ -10,3 +10,4 @@\n line 9\n-line 10\n+LINE TEN\n+extra\n line 11\n")[0]
    agent, regions = agent_version(base, fp)
    assert agent[9:13] == ["line 9", "LINE TEN", "extra", "line 11"] and regions == [(10, 12)]
    committed = list(agent)
    committed[10] = "Line Ten (user)"  # the user's edit of the agent's line
    committed[25] = "someone else's change"  # far away: not part of the correction
    text = file_correction(agent, regions, committed, "f")
    assert "-LINE TEN" in text and "+Line Ten (user)" in text
    assert "someone else" not in text


# ---------------------------------------------------------------- real git, hooks installed

@pytest.fixture
def repo(git_repo):
    install_hooks(git_repo)
    return git_repo


@pytest.fixture
def store(learnagent_home):
    with Store() as s:
        yield s


SUB = {"calc.py": 'def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    """Subtract b from a."""\n    return a - b\n'}


def test_committed_unchanged_is_accepted(repo, store):
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    ep = episode(store, eid)
    assert ep["outcome"] == "accepted"
    assert ep["meta"]["verdict_by"] == "attribution" and "correction" not in ep["meta"]
    assert [e["commit_sha"] for e in events(store, eid, "match")] == [head(repo)]


def test_user_edit_is_recorded_as_a_correction(repo, store):
    eid, _ = propose(store, repo, SUB | {"notes.txt": "subtraction added\nfor the calculator\n"})
    text = (repo / "calc.py").read_text().replace('"""Subtract b from a."""', '"""Return a minus b."""')
    (repo / "calc.py").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add sub, reworded")
    ep = episode(store, eid)
    assert ep["outcome"] == "edited"
    corr = ep["meta"]["correction"]
    assert '-    """Subtract b from a."""' in corr and '+    """Return a minus b."""' in corr
    assert "notes.txt" not in corr  # committed as proposed: no correction there


def test_partial_staging_then_the_rest(repo, store):
    files = {"calc.py": 'def add(a, b):\n    return a + b\n', "util.py": "def double(x):\n    return 2 * x\n",
             "text.py": "def shout(s):\n    return s.upper()\n"}
    eid, _ = propose(store, repo, files)
    # `git add -p` is interactive: stage a partial patch (only util.py) with `git apply --cached`
    git(repo, "add", "-N", "util.py", "text.py")
    part = git(repo, "diff", "--", "util.py")
    git(repo, "reset", "-q")
    git(repo, "apply", "--cached", "-", input=part)
    git(repo, "commit", "-qm", "util only")
    ep = episode(store, eid)
    assert ep["outcome"] == "pending"
    assert ep["meta"]["attribution"]["fraction"] == 0.5
    git(repo, "add", "text.py")
    git(repo, "commit", "-qm", "the rest")
    assert episode(store, eid)["outcome"] == "accepted"
    assert len(events(store, eid, "match")) == 2


def test_hunks_of_one_file_split_across_commits(repo, store):
    top = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(12))
    write(repo, {"many.py": top})
    git(repo, "add", "many.py")
    git(repo, "commit", "-qm", "many")
    agent = top.replace("return 0\n", "return 'zero'\n").replace("return 11\n", "return 'eleven'\n")
    eid, diff = propose(store, repo, {"many.py": agent})
    assert diff.count("\n@@ -") == 2
    first_only = top.replace("return 0\n", "return 'zero'\n")
    (repo / "many.py").write_text(first_only)
    git(repo, "commit", "-qam", "zero")
    assert episode(store, eid)["outcome"] == "pending"
    (repo / "many.py").write_text(agent)
    git(repo, "commit", "-qam", "eleven")
    assert episode(store, eid)["outcome"] == "accepted"


def test_amend_is_not_double_counted_and_dropping_lines_withdraws(repo, store):
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    first = head(repo)
    git(repo, "commit", "-q", "--amend", "-m", "add sub (reworded message)")
    assert episode(store, eid)["outcome"] == "accepted"
    assert [e["commit_sha"] for e in events(store, eid, "match")] == [head(repo)]
    assert [e["commit_sha"] for e in events(store, eid, "rewritten")] == [first]
    assert [e["outcome"] for e in events(store, eid, "verdict")] == ["accepted"]
    # amend again, this time taking the agent's lines out: the automatic verdict is withdrawn
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "commit", "-q", "-a", "--amend", "--allow-empty", "-m", "nothing after all")
    assert episode(store, eid)["outcome"] == "pending"


def test_rebase_maps_old_to_new_without_double_counting(repo, store):
    git(repo, "checkout", "-qb", "feature")
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    git(repo, "checkout", "-q", "main")
    write(repo, {"README.md": "hello\n"})
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "readme")
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    assert episode(store, eid)["outcome"] == "accepted"
    assert [e["commit_sha"] for e in events(store, eid, "match")] == [head(repo)]
    assert len(events(store, eid, "verdict")) == 1


def test_squash_by_interactive_rebase(repo, store):
    eid, _ = propose(store, repo, SUB | {"util.py": "def double(x):\n    return 2 * x\n"})
    git(repo, "add", "calc.py")
    git(repo, "commit", "-qm", "calc part")
    git(repo, "add", "util.py")
    git(repo, "commit", "-qm", "util part")
    assert episode(store, eid)["outcome"] == "accepted"
    git(repo, "rebase", "-q", "-i", "HEAD~2", env={"GIT_SEQUENCE_EDITOR": "sed -i -e '2s/^pick/squash/'"})
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    matches = events(store, eid, "match")
    assert [e["commit_sha"] for e in matches] == [head(repo)]  # only the squashed commit counts now
    assert episode(store, eid)["outcome"] == "accepted"
    assert len(events(store, eid, "verdict")) == 1


def test_cherry_pick_counts_once(repo, store):
    git(repo, "checkout", "-qb", "side")
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    side = head(repo)
    git(repo, "checkout", "-q", "main")
    write(repo, {"README.md": "hello\n"})  # so the picked commit can't be identical to `side`
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "readme")
    git(repo, "cherry-pick", side)
    assert head(repo) != side
    assert episode(store, eid)["outcome"] == "accepted"
    assert len(events(store, eid, "match")) == 2  # two commits carry it; coverage is their union
    assert episode(store, eid)["meta"]["attribution"]["exact"] == 3
    assert len(events(store, eid, "verdict")) == 1


@pytest.mark.parametrize("ff", [False, True])
def test_kept_branch_merged_later(repo, store, ff):
    git(repo, "checkout", "-qb", "learnagent/e1")
    eid, _ = propose(store, repo, SUB, applied=False, outcome="kept", branch="learnagent/e1")
    git(repo, "commit", "-qam", "agent work")  # the agent's own commit on its branch: not a verdict
    assert episode(store, eid)["outcome"] == "kept"
    git(repo, "checkout", "-q", "main")
    if not ff:
        write(repo, {"README.md": "hello\n"})
        git(repo, "add", "README.md")
        git(repo, "commit", "-qm", "readme")
    git(repo, "merge", "-q", "--ff" if ff else "--no-ff", "-m", "merge agent work", "learnagent/e1")
    assert episode(store, eid)["outcome"] == "accepted"


def test_git_revert_marks_reverted(repo, store):
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    git(repo, "revert", "--no-edit", "HEAD")
    ep = episode(store, eid)
    assert ep["outcome"] == "reverted" and "git revert" in ep["outcome_reason"]


def test_removing_the_lines_by_hand_marks_reverted(repo, store):
    eid, _ = propose(store, repo, SUB)
    git(repo, "commit", "-qam", "add sub")
    write(repo, {"README.md": "unrelated\n"})
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "unrelated")
    assert episode(store, eid)["outcome"] == "accepted"
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "commit", "-qam", "drop sub")
    assert episode(store, eid)["outcome"] == "reverted"


def test_window_expiry_rejects_or_keeps_the_committed_part(repo, store):
    never, _ = propose(store, repo, {"never.py": "def never_committed():\n    return 'no'\n"}, started_at=old(8))
    (repo / "never.py").unlink()
    half, _ = propose(store, repo, {"a.py": "def a_function():\n    return 'a'\n",
                                    "b.py": "def b_function():\n    return 'b'\n"}, started_at=old(6))
    git(repo, "add", "a.py")
    git(repo, "commit", "-qm", "a only")  # the hook expires `never` and attributes this to `half`
    assert episode(store, never)["outcome"] == "rejected"
    assert "not committed within 7 days" in episode(store, never)["outcome_reason"]
    assert episode(store, half)["outcome"] == "pending"
    assert episode(store, half)["meta"]["attribution"]["fraction"] == 0.5
    # two days later (evaluated lazily, e.g. by `learnagent status`): half of it was committed -> edited
    msgs = expire_stale(store, repo, load_settings(repo), now=old(-2), repo_id=Repository.at(repo).key)
    ep = episode(store, half)
    assert ep["outcome"] == "edited" and any(half in m for m in msgs)
    # the correction says what the user did to the agent's version: b.py left out, a.py as proposed
    assert "-def b_function():" in ep["meta"]["correction"] and "a.py" not in ep["meta"]["correction"]


def test_outcome_settings_come_from_the_config_and_a_broken_config_gives_the_defaults(tmp_path):
    from learnagent.core.config import OutcomesConfig

    (tmp_path / ".learnagent").mkdir()
    (tmp_path / ".learnagent" / "config.toml").write_text("[outcomes]\nreject_after_days = 3\naccept_fraction = 0.8\n")
    settings = load_settings(tmp_path)
    assert isinstance(settings, OutcomesConfig)
    assert (settings.reject_after_days, settings.accept_fraction, settings.survival_commits) == (3, 0.8, 20)
    (tmp_path / ".learnagent" / "config.toml").write_text("[outcomes]\nreject_after_days = 'soon'\n")
    assert load_settings(tmp_path) == OutcomesConfig()  # the hooks go on with the defaults
