"""The final diff an episode stores is capped (a runaway or hostile agent can write any amount), and
only the stored copy: `do`'s view, `accept` and the branch keep the whole change.

A real run in-process (scripted model, real git, the store on SQLite and on PostgreSQL) with the
cap lowered so that a few kilobytes exceed it; `show` is the real CLI.
"""

from __future__ import annotations

import dataclasses

import pytest

from cli_helpers import run_cli
from learnagent.agent import run as runner
from learnagent.store.episodes import Store

pytestmark = pytest.mark.usefixtures("store_db")  # each test on SQLite and on PostgreSQL

CAP = 2000
FAKE_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
BIG_A = "".join(f"a{i} = {i}\n" for i in range(800))  # ~8 KB: the head of the diff
SMALL_M = "m = 1\n"  # the middle of the diff: cut from the stored copy
BIG_Z = "".join(f"z{i} = {i}\n" for i in range(800)) + f"KEY = '{FAKE_KEY}'\n"  # the tail, with a secret


def _write(path: str, text: str) -> str:
    return f'<write path="{path}">\n{text}</write>'


def test_a_huge_diff_is_stored_cut_and_marked_while_accept_applies_the_whole_change(git_repo, monkeypatch):
    from learnagent.agent import worktree as wt
    from learnagent.agent.models.scripted import ScriptedModel
    from learnagent.core.config import Config
    from learnagent.learning.pairs import is_good
    from learnagent.services.team import diff_paths, touched_paths

    monkeypatch.setattr(runner, "FINAL_DIFF_CAP", CAP)
    cfg = Config()
    cfg.sandbox.mode = "none"
    cfg.budgets.max_tokens = 10**7
    model = ScriptedModel([_write("a_big.py", BIG_A), _write("m.py", SMALL_M), _write("z_big.py", BIG_Z),
                           "<finish>wrote three files</finish>"])
    repo = wt.find_repo(git_repo)
    with Store() as store:
        result = runner.run_episode(repo, "write three files", cfg, model, store, run_tests=False)
        whole = result.diff
        assert len(whole.encode()) > 4 * CAP and "m.py" in diff_paths(whole)  # the run itself saw it all
        ep = store.get_episode(result.episode_id)
        stored = ep.final_diff
        assert len(stored.encode()) <= CAP and "bytes omitted" in stored
        assert stored.startswith(whole[:200])  # head and tail of the real diff around the marker
        assert ep.meta["final_diff_truncated"] == {"bytes": len(whole.encode()),
                                                   "files": ["a_big.py", "m.py", "z_big.py"]}
        assert FAKE_KEY not in stored and FAKE_KEY[:8] not in stored  # scrubbed before the cut
        # a push checks every file the change touched, not only those left in the stored text
        assert "m.py" not in diff_paths(stored) and "m.py" in touched_paths(ep)

        applied = runner.accept(store, repo.repository, runner.Proposal.of_result(result))
        assert sorted(applied) == ["a_big.py", "m.py", "z_big.py"]
        assert [(git_repo / f).read_text() for f in ("a_big.py", "m.py", "z_big.py")] == [BIG_A, SMALL_M, BIG_Z]

        store.set_outcome(result.episode_id, "accepted", "test")
        ep = store.get_episode(result.episode_id)
        assert not is_good(ep)  # a cut diff is no change to learn from ...
        assert is_good(dataclasses.replace(ep, meta={k: v for k, v in ep.meta.items()
                                                     if k != "final_diff_truncated"}))  # ... the flag decides

    shown = run_cli("show", result.episode_id, cwd=git_repo, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert f"cut: {len(stored.encode()):,} of {len(whole.encode()):,} bytes stored" in shown.stdout


def test_a_diff_within_the_cap_is_stored_whole_and_unmarked(git_repo, monkeypatch):
    from learnagent.agent import worktree as wt
    from learnagent.agent.models.scripted import ScriptedModel
    from learnagent.core.config import Config

    cfg = Config()
    cfg.sandbox.mode = "none"
    model = ScriptedModel([_write("m.py", SMALL_M), "<finish>one file</finish>"])
    with Store() as store:
        result = runner.run_episode(wt.find_repo(git_repo), "write one file", cfg, model, store, run_tests=False)
        ep = store.get_episode(result.episode_id)
        assert ep.final_diff == result.diff and "+m = 1" in ep.final_diff
        assert "final_diff_truncated" not in ep.meta


def test_the_cut_never_keeps_half_a_secret():
    """A key that straddles the cut point: scrubbed first, so neither half is kept."""
    head = (runner.FINAL_DIFF_CAP - 100) // 2  # cap_bytes keeps this many bytes before its marker
    diff = "+" + "x" * (head - 11) + FAKE_KEY + "\n+" + "y" * (2 * runner.FINAL_DIFF_CAP) + "\n"
    from learnagent.store.redact import redact_text

    stored, size = runner.stored_diff(diff, redact_text)
    assert size == len(diff.encode()) and len(stored.encode()) <= runner.FINAL_DIFF_CAP
    assert "AKIA" not in stored and "IOSFODNN" not in stored
    unscrubbed, _ = runner.stored_diff(diff, lambda text: text)
    assert "AKIAIOSFOD" in unscrubbed  # without the scrub, half the key would have been kept
