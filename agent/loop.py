"""The agent loop: ask the model, parse one action, run it, show the result; repeat.

Control flow by exceptions that carry the exit message (as in mini-swe-agent): `Finished` when
the model is done, `BudgetExceeded` when a step, token or time budget runs out. Everything that
happens is reported to a `Recorder` (the episode store) and an `Observer` (the live display).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from learnagent.agent import prompts
from learnagent.agent.actions import Action, FormatError, parse_action
from learnagent.runtime.model import Completion, Model
from learnagent.agent.tools import Finished, ToolError, Tools
from learnagent.core.config import Budgets
from learnagent.core.errors import LearnagentError


class BudgetExceeded(Exception):
    pass


class Observer(Protocol):
    def on_step(self, step: int) -> None: ...
    def on_model_text(self, text: str) -> None: ...
    def on_model_done(self, step: int, completion: Completion) -> None: ...
    def on_action(self, step: int, action: Action) -> None: ...
    def on_result(self, step: int, name: str, ok: bool, output: str) -> None: ...


class Recorder(Protocol):
    def message(self, step: int, role: str, content: str, tokens: int | None = None) -> int: ...
    def model_call(self, step: int, n_prompt_messages: int, response_seq: int, completion: Completion) -> None: ...
    def tool_call(self, step: int, name: str, args: dict, result: str, ok: bool, duration_s: float) -> None: ...


class NullObserver:
    def on_step(self, step): pass
    def on_model_text(self, text): pass
    def on_model_done(self, step, completion): pass
    def on_action(self, step, action): pass
    def on_result(self, step, name, ok, output): pass


@dataclass
class LoopResult:
    status: str  # finished | budget_exceeded
    summary: str
    steps: int
    tokens: int


class AgentLoop:
    def __init__(self, model: Model, tools: Tools, budgets: Budgets, recorder: Recorder,
                 observer: Observer | None = None, max_response_tokens: int = 512, example: bool = False):
        self.model, self.tools, self.budgets = model, tools, budgets
        self.example = example  # a worked example before the task (prompts.worked_example)
        self.recorder, self.observer = recorder, observer or NullObserver()
        self.max_response_tokens = max_response_tokens
        self.messages: list[dict] = []
        self.tokens = 0

    def run(self, task: str, repo_map: str) -> LoopResult:
        self.started = time.monotonic()
        for message in prompts.opening_messages(task, repo_map, self.tools.test_command, self.example):
            self._add(0, message["role"], message["content"])
        step = 0
        try:
            while True:
                step += 1
                self._check_budgets(step)
                self.step(step)
        except Finished as done:
            return LoopResult("finished", done.summary, step, self.tokens)
        except BudgetExceeded as exc:
            return LoopResult("budget_exceeded", str(exc), step - 1, self.tokens)

    def step(self, step: int) -> None:
        self.observer.on_step(step)
        n_prompt = len(self.messages)
        completion = self.model.complete(self.messages, max_tokens=self.max_response_tokens,
                                         on_text=self.observer.on_model_text)
        self.tokens += completion.prompt_tokens + completion.completion_tokens
        seq = self._add(step, "assistant", completion.text, completion.completion_tokens)
        self.recorder.model_call(step, n_prompt, seq, completion)
        self.observer.on_model_done(step, completion)
        try:
            action = parse_action(completion.text)
        except FormatError as exc:
            self._observe(step, "format", False, str(exc), {}, 0.0)
            return
        self.observer.on_action(step, action)
        note = (f"(only the first action of a reply is run; {action.extra_actions} more ignored)"
                if action.extra_actions else "")
        start = time.perf_counter()
        try:
            output, ok = self.tools.run(action), True
        except Finished:
            self.recorder.tool_call(step, "finish", action.as_record(), "", True, time.perf_counter() - start)
            raise
        except (ToolError, LearnagentError, OSError, UnicodeError) as exc:
            # LearnagentError covers the path guard; the model sees the error and can recover
            output, ok = str(exc), False
        self._observe(step, action.name, ok, output, action.as_record(), time.perf_counter() - start, note)

    def _observe(self, step, name, ok, output, args, duration, note=""):
        self.recorder.tool_call(step, name, args, output, ok, duration)
        self.observer.on_result(step, name, ok, output)
        self._add(step, "user", prompts.observation(name, ok, output, note))

    def _add(self, step: int, role: str, content: str, tokens: int | None = None) -> int:
        self.messages.append({"role": role, "content": content})
        return self.recorder.message(step, role, content, tokens)

    def _check_budgets(self, step: int) -> None:
        b = self.budgets
        if step > b.max_steps:
            raise BudgetExceeded(f"step budget of {b.max_steps} used up")
        if self.tokens >= b.max_tokens:
            raise BudgetExceeded(f"token budget of {b.max_tokens} used up ({self.tokens} tokens)")
        if time.monotonic() - self.started >= b.max_seconds:
            raise BudgetExceeded(f"time budget of {b.max_seconds}s used up")
