"""`learnagent do`: run the agent on a task in the repository, decide its result, as one flow.

    cli.do -> run_task: the model (+ the registry's promoted adapter) -> agent.run_episode
           -> the user's verdict (asked by the view) -> accept / reject / keep -> exit code

The CLI resolves the repository once (a `RepoInfo`: the `Repository` value and its HEAD), builds
the config (`task_config`) and a view (`TaskView`: what the user sees and answers); this module
decides everything else. The agent layer never reads learning's state: the model gets the promoted
adapter through `open_model` here.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from learnagent.core.errors import UsageError
from learnagent.core.repository import Repository

if TYPE_CHECKING:  # the agent layer loads inside the functions: `learnagent --help` stays light
    from learnagent.agent.loop import Observer
    from learnagent.agent.run import EpisodeResult
    from learnagent.agent.worktree import RepoInfo
    from learnagent.core.config import Config

EXIT_TESTS_FAILED = 1
EXIT_BUDGET = 3
EXIT_CONFLICT = 4
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
EXIT_OUTPUT_CLOSED = 141  # stdout closed under us, e.g. `learnagent do ... | head` (128 + SIGPIPE)


class TaskView(Protocol):
    """What `do` shows and asks (cli/do_cmd.py implements it with rich)."""

    observer: Observer  # the run as it happens

    def warning(self, message: str) -> None: ...
    def note(self, message: str) -> None: ...
    def show_result(self, result: EpisodeResult) -> None: ...
    def verdict(self, result: EpisodeResult) -> str: ...  # accept | reject | keep | none (nothing to apply)
    def applied(self, files: list[str]) -> None: ...
    def conflict(self, exc: Exception) -> None: ...
    def rejected(self) -> None: ...
    def kept(self, result: EpisodeResult) -> None: ...
    def finished(self, result: EpisodeResult) -> None: ...


@dataclass(frozen=True)
class TaskRun:
    result: EpisodeResult
    verdict: str
    exit_code: int


def task_config(repo_root, *, model: str | None = None, no_adapter: bool = False, max_steps: int | None = None,
                max_tokens: int | None = None, max_seconds: int | None = None, sandbox: str | None = None,
                allow_network: bool = False, no_tests: bool = False) -> Config:
    """The repository's config with the command's options on top; a missing test command is a usage
    error unless the run goes without tests."""
    from learnagent.core.config import detect_test_command, load_config

    cfg = load_config(repo_root)
    if model:
        cfg.model.name = model
    if no_adapter:
        cfg.model.use_adapter = False
    for name, value in (("max_steps", max_steps), ("max_tokens", max_tokens), ("max_seconds", max_seconds)):
        if value is not None:
            setattr(cfg.budgets, name, value)
    if sandbox:
        cfg.sandbox.mode = sandbox
    cfg.sandbox.network = cfg.sandbox.network or allow_network
    if not cfg.test.command and not no_tests:
        cfg.test.command = detect_test_command(repo_root)
        if not cfg.test.command:
            raise UsageError("no test command found (pytest, npm test, go test, cargo test, make test): "
                             "set one with `learnagent init --test-command CMD` or pass --no-tests")
    return cfg


def promoted_adapter_of(repo: Repository):
    """A function giving `repo`'s promoted adapter as (version, folder), or None: reads the
    registry's pointer file each call (cheap), so a served model follows promotions."""
    from learnagent.learning.registry import promoted_adapter

    return lambda: promoted_adapter(repo)


def open_model(model_cfg, repo: Repository, *, on_info=None):
    """The model a config names, with `repo`'s promoted adapter unless the config turns it off; in a
    repository joined to a team whose `[team] serve` is set, the team server's adapter of it
    (services.team.team_adapter; docs/TEAM.md "Serving the team's adapters")."""
    from learnagent.agent.models import load_model
    from learnagent.services.team import team_adapter

    return load_model(model_cfg, promoted=promoted_adapter_of(repo), repo_key=repo.key, on_info=on_info,
                      team=team_adapter(repo))


def run_task(store, repo: RepoInfo, task: str, cfg: Config, model, view: TaskView, *, episode_id: str,
             run_tests: bool = True, test_env=None, on_episode_id=None) -> TaskRun:
    """One episode of `do` from start to the user's verdict. `repo`: the RepoInfo the CLI resolved;
    `episode_id`: the id proposed, `on_episode_id` is told the one the store gave (agent/run.py).
    Ctrl-C, SIGTERM and a closed output propagate (the caller cleans up with `interrupted`)."""
    from learnagent.agent import run as runner

    result = runner.run_episode(repo, task, cfg, model, store, observer=view.observer, run_tests=run_tests,
                                on_warning=view.warning, test_env=test_env, episode_id=episode_id,
                                on_episode_id=on_episode_id)
    view.show_result(result)
    verdict = view.verdict(result)
    code = settle_verdict(store, repo, result, verdict, view)
    view.finished(result)
    if code == 0 and result.status == "budget_exceeded":
        code = EXIT_BUDGET
    if code == 0 and result.test is not None and not result.test.passed:
        code = EXIT_TESTS_FAILED
    return TaskRun(result, verdict, code)


def settle_verdict(store, repo: RepoInfo, result: EpisodeResult, verdict: str, view: TaskView) -> int:
    """Carry out the verdict on the episode's branch and record it; EXIT_CONFLICT when accepting
    would conflict with the user's tree (the branch is kept instead), else 0."""
    from learnagent.agent import run as runner
    from learnagent.agent import worktree as wt

    ep = runner.Proposal.of_result(result)
    if verdict == "accept":
        try:
            view.applied(runner.accept(store, repo.repository, ep, on_note=view.note))
        except wt.MergeConflict as exc:
            view.conflict(exc)
            runner.keep(store, repo.root, ep)
            return EXIT_CONFLICT
    elif verdict == "reject":
        runner.reject(store, repo.root, ep)
        view.rejected()
    elif verdict == "keep":
        runner.keep(store, repo.root, ep)
        view.kept(result)
    else:  # nothing to apply: not a rejection, and out of the acceptance rate
        runner.reject(store, repo.root, ep, reason="the agent changed nothing", outcome="unchanged")
    return 0


def interrupted(store, repo: RepoInfo, episode_id: str, exc: BaseException) -> int:
    """Ctrl-C, SIGTERM or a closed output anywhere in the run: record the episode as interrupted
    and remove its folder and branch (a second Ctrl-C cannot stop that); returns the exit code."""
    from learnagent.agent import run as runner

    closed = isinstance(exc, BrokenPipeError)
    why = "the output was closed (broken pipe)" if closed else "interrupted (Ctrl-C or SIGTERM)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        runner.interrupted(store, repo.repository, episode_id, why)
    finally:
        signal.signal(signal.SIGINT, previous)
    return EXIT_OUTPUT_CLOSED if closed else EXIT_INTERRUPTED
