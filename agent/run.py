"""`learnagent do`: one episode from task to recorded diff, and the user's verdict on it.

cli → run_episode (worktree, model, sandbox, loop, final tests, record) → decide (accept/reject/keep).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.agent import prompts
from learnagent.agent import worktree as wt
from learnagent.agent.loop import AgentLoop, Observer
from learnagent.runtime.model import Completion, Model
from learnagent.agent.tools import Tools, cap_bytes
from learnagent.core.config import Config
from learnagent.core.errors import LearnagentError, UsageError
from learnagent.core.ignore import IgnoreRules
from learnagent.core.processes import process_start
from learnagent.core.repository import Repository
from learnagent.core.testenv import TestEnv, resolve_test_env
from learnagent.sandbox import CommandResult, Sandbox, policy
from learnagent.store.episodes import Store, new_episode_id
from learnagent.store.records import EPISODE_STATUSES, Episode, EpisodeStatus

TEST_TAIL_CHARS = 4000
# bytes of an episode's final diff the store keeps (a runaway or hostile agent can write any amount)
FINAL_DIFF_CAP = 256_000


@dataclass
class TestRun:
    command: str
    exit_code: int | None
    timed_out: bool
    output: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class EpisodeResult:
    episode_id: str
    status: str
    summary: str
    diff: str
    base: str
    branch: str
    worktree: Path
    tip: str | None
    test: TestRun | None
    steps: int
    tokens: int
    recorded: bool = True
    changed_files: list[str] = field(default_factory=list)


class StoreRecorder:
    """Writes the loop's events into the episode store (or nowhere while recording is off)."""

    def __init__(self, store: Store | None, episode_id: str):
        self.store, self.episode_id, self._seq = store, episode_id, -1

    def message(self, step, role, content, tokens=None):
        if self.store is None:
            self._seq += 1
            return self._seq
        return self.store.add_message(self.episode_id, step, role, content, tokens)

    def model_call(self, step, n_prompt_messages, response_seq, completion: Completion):
        if self.store:
            extra = completion.extra
            self.store.add_model_call(self.episode_id, step, n_prompt_messages, response_seq, completion.prompt_tokens,
                                      completion.completion_tokens, completion.duration_s, completion.cost_usd,
                                      engine=extra.get("engine"), adapter_version=extra.get("adapter"),
                                      stop_reason=extra.get("stop_reason"))

    def tool_call(self, step, name, args, result, ok, duration_s):
        if self.store:
            self.store.add_tool_call(self.episode_id, step, name, args, result, ok, duration_s)

    def test_run(self, phase: str, command: str, result: CommandResult):
        if self.store:
            self.store.add_test_run(self.episode_id, phase, command, result.exit_code, result.output[-TEST_TAIL_CHARS:],
                                    result.duration_s, result.timed_out)


def run_episode(repo: wt.RepoInfo, task: str, cfg: Config, model: Model, store: Store, *,
                observer: Observer | None = None, run_tests: bool = True,
                on_warning=None, test_env: TestEnv | None = None, episode_id: str | None = None,
                on_episode_id=None) -> EpisodeResult:
    """One episode. `episode_id` (default: a new one) is the id proposed; a recorded run takes the
    first the store has free from it (another run, another repository, or on a team's store another
    machine, may have drawn the same one in the same second) and tells it to `on_episode_id` before
    anything is made under it, so that the caller cleans up the right one when interrupted."""
    task = task.strip()
    if not task:
        raise UsageError("the task is empty: say what the agent should do, e.g. learnagent do \"fix the failing test\"")
    test_command = cfg.test.command if run_tests else ""
    example = prompts.use_example(cfg.model.examples, model.name)  # a bad setting fails before any work
    test_env = test_env or resolve_test_env(repo.root, cfg.test.python)
    repo_id = store.ensure_repo(repo.repository)
    recording = store.recording_enabled(repo_id)
    if not recording and on_warning:
        on_warning("recording is off for this repository (learnagent logs on): this episode is not stored")
    episode_id = episode_id or new_episode_id()
    if recording:  # the row first: the store decides the id, and the folder and branch are named by it
        episode_id = store.create_episode(
            repo_id, task, base_commit=repo.head, model=model.name, adapter_version=model.adapter_version,
            episode_id=episode_id, redraw=True,
            meta={"pid": os.getpid(), "pid_start": process_start(os.getpid()), "host": socket.gethostname(),
                  "config": cfg.to_dict(), "test_env": test_env.describe(), "user_branch": repo.branch})
    if on_episode_id is not None:
        on_episode_id(episode_id)
    # The user's rules as they stand now (their working tree's .learnagentignore, committed or
    # not): files they hide are not checked out, and a result that touches one is refused.
    ignore = IgnoreRules.for_repository(repo.repository)
    try:
        path, branch = wt.create_worktree(repo.repository, episode_id, repo.head, ignore)
    except BaseException as exc:
        if recording:
            store.finish_episode(episode_id, _ended_as(exc), error=f"{type(exc).__name__}: {exc}")
        raise
    if recording:
        store.set_episode_place(episode_id, branch=branch, worktree=str(path))
    recorder = StoreRecorder(store if recording else None, episode_id)
    sandbox = None
    try:
        sandbox = Sandbox(path, mode=cfg.sandbox.mode, network=cfg.sandbox.network, on_warning=on_warning,
                          env=policy.project_env(test_env, repo.root, path),  # the project's Python
                          hide=wt.user_repository_paths(repo.repository),
                          interpreters=(test_env.venv,) if test_env.venv else ())
        # the user's rules, not the folder's own .learnagentignore: the agent can edit that
        episode_rules = ignore.rooted_at(path)
        tools = Tools(path, sandbox, test_command, command_timeout=cfg.budgets.command_timeout,
                      test_timeout=cfg.test.timeout, output_cap=cfg.budgets.output_cap,
                      on_test=lambda cmd, res: recorder.test_run("agent", cmd, res), ignore=episode_rules)
        repo_map = build_repo_map(repo.repository, path, task, cfg.repomap.tokens, model.count_tokens, episode_rules)
        if recording:
            store.update_meta(episode_id, repo_map_tokens=model.count_tokens(repo_map), sandbox=sandbox.kind)
        loop = AgentLoop(model, tools, cfg.budgets, recorder, observer, cfg.model.max_response_tokens,
                         example=example)
        outcome = loop.run(task, repo_map)
        tip = wt.commit_all(repo.repository, path, base=repo.head, branch=branch, message=commit_message(task, store),
                            ignore=ignore)
        diff = wt.diff(repo.root, repo.head, tip) if tip else ""
        test = None
        if test_command:
            res = sandbox.run(test_command, timeout=cfg.test.timeout, output_cap=cfg.budgets.output_cap)
            recorder.test_run("final", test_command, res)
            test = TestRun(test_command, res.exit_code, res.timed_out, res.output, res.duration_s)
    except BaseException as exc:  # KeyboardInterrupt included: the record must say how it ended
        if recording:
            store.finish_episode(episode_id, _ended_as(exc), error=f"{type(exc).__name__}: {exc}")
        wt.remove_worktree(repo.root, path, branch, delete_branch=True)
        raise
    finally:
        if sandbox is not None:
            sandbox.close()  # its private /tmp and home go; the folder stays for the verdict
    try:
        wt.remove_agent_repository(path)  # the agent's own .git: read by nobody from here on
    except OSError as exc:  # never worth losing the episode over; gc removes the folder later
        if on_warning:
            on_warning(f"could not remove the agent's .git in {path}: {exc.strerror}")
    changed = [p for _, p in wt.changed_paths(repo.root, repo.head, tip)] if tip else []
    if recording:
        stored, cut = stored_diff(diff, store.scrub)
        with store.transaction():
            store.finish_episode(episode_id, outcome.status, final_diff=stored, summary=outcome.summary)
            if tip:  # the agent's commit: outcomes credit a kept branch only with commits made from it
                store.update_meta(episode_id, tip=tip)
            if cut:  # what was cut: the size, and every file the change touches (a push checks those)
                store.update_meta(episode_id, final_diff_truncated={"bytes": cut, "files": changed})
    return EpisodeResult(episode_id, outcome.status, outcome.summary, diff, repo.head, branch, path, tip, test,
                         outcome.steps, outcome.tokens, recording, changed)


def stored_diff(diff: str, scrub) -> tuple[str, int]:
    """The final diff as the store keeps it, and its size in bytes when it had to be cut (else 0):
    at most FINAL_DIFF_CAP bytes, its head and tail around a marker (`cap_bytes`, as a tool's
    output). Scrubbed before the cut, so that no secret is kept half. The episode's branch keeps
    the whole change: accept applies that, never this text."""
    size = len(diff.encode("utf-8"))
    if size <= FINAL_DIFF_CAP:
        return diff, 0
    scrubbed = scrub(diff)
    stored = cap_bytes(scrubbed, FINAL_DIFF_CAP)
    return stored, (size if stored != scrubbed else 0)


def _ended_as(exc: BaseException) -> EpisodeStatus:
    """Ctrl-C, SIGTERM, or the output closed (`do ... | head`): interrupted, not failed."""
    return "interrupted" if isinstance(exc, (KeyboardInterrupt, BrokenPipeError)) else "failed"


def commit_message(task: str, store: Store) -> str:
    """`learnagent: <the task's first line>`, redacted before it is cut: the store's scrubber (it
    may know more secrets than the patterns), then store/redact.py `commit_subject` (first line,
    no control characters, never half a secret or half a marker)."""
    from learnagent.store.redact import commit_subject

    return f"learnagent: {commit_subject(store.scrub(task), limit=60)}"


def build_repo_map(repo: Repository, worktree: Path, task: str, max_tokens: int, count_tokens,
                   ignore: IgnoreRules) -> str:
    """The map of the episode folder `worktree`, its files filtered by `ignore` (the user's rules)."""
    if max_tokens <= 0:
        return ""
    from learnagent.agent.repomap import RepoMap, list_source_files, mentions_from_text

    rmap = RepoMap(worktree, count_tokens=count_tokens, shared_with=repo,  # one cache for all its episodes
                   ignore=ignore)
    files, idents = mentions_from_text(task, list_source_files(worktree, ignore))
    return rmap.render(max_tokens=max_tokens, mentioned_files=files, mentioned_idents=idents)


# ---- the verdict ------------------------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    """What a verdict acts on: an episode's branch (from its base commit) and folder; `recorded`:
    False when `logs off` kept it out of the store (the verdict then touches only git)."""

    id: str
    branch: str | None
    base_commit: str | None
    worktree: str | None
    recorded: bool = True

    @classmethod
    def of_result(cls, result: EpisodeResult) -> "Proposal":
        return cls(result.episode_id, result.branch, result.base, str(result.worktree), result.recorded)

    @classmethod
    def of_episode(cls, ep: Episode) -> "Proposal":
        return cls(ep.id, ep.branch, ep.base_commit, ep.worktree)


def accept(store: Store, repo: Repository, ep: Proposal, on_note=None) -> list[str]:
    """Apply the episode's branch to the user's working tree (3-way); MergeConflict changes nothing."""
    repo_root = repo.work_tree
    tip = wt.git(repo_root, "rev-parse", "--verify", "--quiet", f"refs/heads/{ep.branch}^{{commit}}",
                 check=False).strip()
    if not tip:
        raise LearnagentError(f"episode {ep.id}: its branch {ep.branch} is gone; nothing to apply")
    applied = wt.apply_to_user_tree(repo, ep.base_commit, tip, on_note=on_note)
    if ep.recorded:
        store.update_meta(ep.id, applied=True, applied_at=time.time(), applied_files=applied)
    wt.remove_worktree(repo_root, _folder(ep), ep.branch, delete_branch=True)
    return applied


def reject(store: Store, repo_root: Path, ep: Proposal, reason: str | None = None, outcome: str = "rejected") -> None:
    """Remove the episode's folder and branch; `outcome` "unchanged" for a run that changed nothing."""
    wt.remove_worktree(repo_root, _folder(ep), ep.branch, delete_branch=True)
    if ep.recorded:
        store.set_outcome(ep.id, outcome, reason or "rejected at review")


def keep(store: Store, repo_root: Path, ep: Proposal) -> None:
    # the branch holds the agent's commit; the worktree folder is not needed to apply it later
    wt.remove_worktree(repo_root, _folder(ep), ep.branch, delete_branch=False)
    if ep.recorded:
        store.set_outcome(ep.id, "kept", "branch kept for later")


def interrupted(store: Store, repo: Repository, episode_id: str, why: str) -> None:
    """After Ctrl-C, SIGTERM or closed output anywhere in `do`: an episode not yet decided is
    marked interrupted and its folder and branch go (its diff stays in the store). One the user
    already kept or applied is left as it is."""
    ep = store.find_episode(episode_id)
    if ep is not None:
        if ep.outcome != "pending" or ep.meta.get("applied"):
            return
        if (ep.meta.get("pid"), ep.meta.get("host")) != (os.getpid(), socket.gethostname()):
            return  # another run's row: ours was interrupted before the store gave it this id
        store.mark_interrupted(episode_id, why, statuses=tuple(s for s in EPISODE_STATUSES if s != "interrupted"))
    folder = Path(ep.worktree) if ep is not None and ep.worktree else \
        repo.worktrees_dir / episode_id  # not recorded (logs off): where it was made
    branch = ep.branch if ep is not None and ep.branch else wt.BRANCH_PREFIX + episode_id
    wt.remove_worktree(repo.work_tree, folder, branch, delete_branch=True)


def _folder(ep: Proposal) -> Path | None:
    return Path(ep.worktree) if ep.worktree else None
