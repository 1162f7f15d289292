"""What the model is told: the system prompt (tools and format) and the task message."""

from __future__ import annotations

from learnagent.agent.tooltable import prompt_section

SYSTEM = """You are learnagent, a careful software engineer working in a git repository.
You work in steps. In each reply, think briefly, then write exactly ONE action at the end:

{tools}

After each action you get its result. Keep changes small and in the style of the code around them.
Run the tests before you finish."""


def system_prompt(test_command: str) -> str:
    hint = f" ({test_command})" if test_command else " (none configured)"
    return SYSTEM.format(tools=prompt_section(test_hint=hint))


def task_message(task: str, repo_map: str) -> str:
    parts = [f"Task: {task}"]
    if repo_map.strip():
        parts.append("Repository map (the most relevant files and definitions):\n" + repo_map.rstrip())
    return "\n\n".join(parts)


def observation(action_name: str, ok: bool, output: str, note: str = "") -> str:
    head = f"[{action_name} {'ok' if ok else 'error'}]"
    return "\n".join(p for p in (head, output.rstrip(), note) if p)


EXAMPLE_MODES = ("auto", "on", "off")


def worked_example(test_command: str) -> list[dict]:
    """One finished task as earlier turns of the conversation, each result in the form the tools
    give. Small local models copy the action format from an example more often than they follow
    the instructions alone (measured: bench/bench_first_action.py, docs/benchmarks/first_action.md)."""
    turns = [
        {"role": "user", "content": task_message("Add a function mul(a, b) to ops.py that returns a * b",
                                                 "ops.py:\n│def add(a, b):")},
        {"role": "assistant", "content": 'I will read the file first.\n<read path="ops.py"/>'},
        {"role": "user", "content": observation("read", True, "ops.py (2 lines)\n    1 def add(a, b):\n"
                                                                 "    2     return a + b")},
        {"role": "assistant", "content": "I add mul after add.\n<edit path=\"ops.py\">\n<<<<<<< SEARCH\n"
                                         "    return a + b\n=======\n    return a + b\n\n\ndef mul(a, b):\n"
                                         "    return a * b\n>>>>>>> REPLACE\n</edit>"},
        {"role": "user", "content": observation("edit", True, "edited ops.py: 1 block(s) applied")},
    ]
    if test_command:  # without one, <test/> only errors: the example does not show it
        turns += [{"role": "assistant", "content": "Now I run the tests.\n<test/>"},
                  {"role": "user", "content": observation("test", True, f"$ {test_command}\n3 passed in 0.02s\n"
                                                                        "[exit code 0, 0.4s]")}]
    done = "; the tests pass" if test_command else ""
    return turns + [{"role": "assistant", "content": f"<finish>Added mul(a, b) to ops.py{done}.</finish>"}]


def use_example(mode: str, model_name: str) -> bool:
    """`auto`: on for local models (small ones need it), off for API models (tokens they do not need)."""
    if mode not in EXAMPLE_MODES:
        from learnagent.core.errors import UsageError

        raise UsageError(f"[model] examples = '{mode}' is not one of: {', '.join(EXAMPLE_MODES)}")
    return mode == "on" or (mode == "auto" and model_name.startswith("local:"))


def opening_messages(task: str, repo_map: str, test_command: str, example: bool) -> list[dict]:
    """What the model sees at step 1: the system prompt, the worked example when asked, the task."""
    head = [{"role": "system", "content": system_prompt(test_command)}]
    shown = worked_example(test_command) if example else []
    return head + shown + [{"role": "user", "content": task_message(task, repo_map)}]
