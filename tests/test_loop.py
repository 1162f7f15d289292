"""The agent loop in-process, driven by the package's deterministic scripted model: every budget
(steps, tokens, time, output caps), and what the model sees after a malformed reply, a failing tool
and a reply with more than one action. The loop records into the real episode store (SQLite)."""

from __future__ import annotations

import pytest

from learnagent.agent.loop import AgentLoop
from learnagent.agent.models.scripted import ScriptedModel
from learnagent.agent.run import StoreRecorder
from learnagent.agent.tools import Tools
from learnagent.core.config import Budgets
from learnagent.sandbox import Sandbox
from learnagent.store.episodes import Store
from learnagent.core.repository import Repository

EDIT = '<edit path="calc.py">\n<<<<<<< SEARCH\n    return a + b\n=======\n    return b + a\n>>>>>>> REPLACE\n</edit>'


class Episode:
    """One loop run on the test repository, recorded in a real store."""

    def __init__(self, repo, store_path):
        self.repo = repo
        self.store = Store(store_path)
        self.sandbox = Sandbox(repo, mode="none")

    def run(self, responses: list, *, test_command: str = "python -m pytest -q", **budgets):
        self.model = ScriptedModel(responses)
        limits = Budgets(**budgets)
        tools = Tools(self.repo, self.sandbox, test_command, command_timeout=limits.command_timeout,
                      output_cap=limits.output_cap)
        self.id = self.store.create_episode(self.store.ensure_repo(Repository.at(self.repo)), "make add commutative")
        loop = AgentLoop(self.model, tools, limits, StoreRecorder(self.store, self.id))
        self.result = loop.run("make add commutative", repo_map="calc.py:\n│def add(a, b):")
        self.record = self.store.get_episode(self.id)
        return self.result

    @property
    def tool_calls(self) -> list[tuple[str, bool]]:
        return [(c.name, c.ok) for c in self.record.tool_calls]

    def seen_by_model(self, step: int) -> str:
        """The observation the model got after `step` (the last user message of that step)."""
        return [m.content for m in self.record.messages if m.step == step and m.role == "user"][-1]


@pytest.fixture
def episode(git_repo, tmp_path):
    ep = Episode(git_repo, tmp_path / "episodes.db")
    yield ep
    ep.sandbox.close()
    ep.store.close()


def test_a_task_from_first_read_to_finish(episode, git_repo):
    result = episode.run(['I read the code.\n<read path="calc.py"/>', EDIT, "<test/>", "<finish>add is b + a</finish>"])
    assert (result.status, result.summary, result.steps) == ("finished", "add is b + a", 4)
    assert (git_repo / "calc.py").read_text() == "def add(a, b):\n    return b + a\n"
    assert episode.tool_calls == [("read", True), ("edit", True), ("test", True), ("finish", True)]
    assert episode.seen_by_model(3).startswith("[test ok]\n$ python -m pytest -q\n")
    assert [m.role for m in episode.record.messages][:2] == ["system", "user"]
    assert result.tokens == sum(c.prompt_tokens + c.completion_tokens for c in episode.record.model_calls)


# ---- budgets -------------------------------------------------------------------------------------------

def test_step_budget_stops_before_the_next_model_call(episode):
    result = episode.run(["<list/>"] * 5, max_steps=3)
    assert (result.status, result.summary, result.steps) == ("budget_exceeded", "step budget of 3 used up", 3)
    assert episode.model.calls == 3 and len(episode.record.model_calls) == 3


def test_token_budget_is_checked_between_steps(episode, git_repo, tmp_path):
    replies = ['<read path="calc.py"/>', '<read path="test_calc.py"/>', "<list/>", "<finish>x</finish>"]
    episode.run(replies)  # unbounded: what each step costs (the scripted model's counts are deterministic)
    per_step = [c.prompt_tokens + c.completion_tokens for c in episode.record.model_calls]
    assert len(per_step) == 4

    again = Episode(git_repo, tmp_path / "again.db")
    try:
        # enough for step 1 and one token more: step 2 still runs (the budget is checked before a
        # step, so a step may end above it), step 3 does not
        result = again.run(replies, max_tokens=per_step[0] + 1)
    finally:
        again.sandbox.close()
        again.store.close()
    used = per_step[0] + per_step[1]
    assert (result.status, result.steps, result.tokens) == ("budget_exceeded", 2, used)
    assert result.summary == f"token budget of {per_step[0] + 1} used up ({used} tokens)"
    assert again.model.calls == 2


def test_time_budget_stops_after_the_step_that_used_it_up(episode):
    result = episode.run(["<run>sleep 1.2</run>", "<list/>", "<finish>late</finish>"], max_seconds=1)
    assert (result.status, result.summary, result.steps) == ("budget_exceeded", "time budget of 1s used up", 1)
    assert episode.model.calls == 1 and episode.tool_calls == [("run", True)]


def test_command_output_is_capped_for_the_model_and_the_store(episode):
    cap = 2000
    episode.run(["<run>python -c \"print('x' * 50000); print('THE END')\"</run>", "<finish>ok</finish>"],
                output_cap=cap)
    stored = episode.record.tool_calls[0].result
    assert len(stored.encode()) <= cap and "output truncated" in stored and "THE END" in stored
    assert len(episode.seen_by_model(1).encode()) <= cap + 100  # the "[run ok]" head and the note


def test_file_and_error_output_are_capped_too(episode, git_repo):
    cap = 2000
    (git_repo / "big.txt").write_text("".join(f"{i} {'y' * 60}\n" for i in range(1000)))
    missing = "d/" * 1500 + "x.py"  # the error names the path: 3,000 bytes
    outside = "../" + "o" * 3000
    episode.run(['<read path="big.txt"/>', f'<read path="{missing}"/>', f'<list path="{outside}"/>',
                 "<finish>ok</finish>"], output_cap=cap)
    read, not_found, refused = episode.record.tool_calls[:3]
    assert read.ok and len(read.result.encode()) <= cap and 'read on with start="' in read.result
    for error in (not_found, refused):
        assert not error.ok and len(error.result.encode()) <= cap and "output truncated" in error.result


# ---- what the model sees when things go wrong ----------------------------------------------------------

def test_a_reply_without_an_action_is_answered_with_the_format(episode):
    result = episode.run(["I think the bug is in add.", "<finish>done</finish>"])
    assert result.status == "finished" and result.steps == 2
    assert episode.tool_calls[0] == ("format", False)
    assert episode.seen_by_model(1).startswith("[format error]\nno action found. End every reply with exactly one")


def test_a_failing_tool_is_shown_and_the_loop_goes_on(episode):
    result = episode.run(['<read path="nope.py"/>', '<read path="../../etc/passwd"/>', "<finish>done</finish>"])
    assert result.status == "finished"
    assert episode.tool_calls[:2] == [("read", False), ("read", False)]
    assert episode.seen_by_model(1).startswith("[read error]\nnope.py does not exist")
    assert episode.seen_by_model(2).startswith("[read error]\n")  # the path guard's refusal, not a crash


def test_extra_actions_in_a_reply_are_ignored_and_the_model_is_told(episode, git_repo):
    episode.run(['<write path="a.txt">A</write>\n<write path="b.txt">B</write>\n<finish>both</finish>',
                 "<finish>one</finish>"])
    assert (git_repo / "a.txt").read_text() == "A\n" and not (git_repo / "b.txt").exists()
    assert episode.seen_by_model(1).endswith("(only the first action of a reply is run; 2 more ignored)")
    assert episode.result.summary == "one"


def test_the_scripted_model_finishes_when_its_script_runs_out(episode):
    result = episode.run(["<list/>"], max_steps=10)
    assert (result.status, result.summary, result.steps) == ("finished", "scripted model: script exhausted", 2)
