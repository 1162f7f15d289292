"""What the model is told: the system prompt (tools and format) and the task message."""

from __future__ import annotations

SYSTEM = """You are learnagent, a careful software engineer working in a git repository.
You work in steps. In each reply, think briefly, then write exactly ONE action at the end:

<list path="DIR"/>                          list files
<read path="FILE"/>                         read a file (add start="N" end="M" for a range)
<search pattern="REGEX" path="DIR"/>        search file contents
<edit path="FILE">
<<<<<<< SEARCH
exact lines copied from the file
=======
the new lines
>>>>>>> REPLACE
</edit>                                     change a file (one or more SEARCH/REPLACE blocks)
<write path="FILE">whole new content</write>  create or overwrite a file
<run>COMMAND</run>                          run a shell command in the repository
<test/>                                     run the repository's tests{test_hint}
<finish>SUMMARY</finish>                    stop when the task is done

After each action you get its result. Keep changes small and in the style of the code around them.
Run the tests before you finish."""


def system_prompt(test_command: str) -> str:
    hint = f" ({test_command})" if test_command else " (none configured)"
    return SYSTEM.format(test_hint=hint)


def task_message(task: str, repo_map: str) -> str:
    parts = [f"Task: {task}"]
    if repo_map.strip():
        parts.append("Repository map (the most relevant files and definitions):\n" + repo_map.rstrip())
    return "\n\n".join(parts)


def observation(action_name: str, ok: bool, output: str, note: str = "") -> str:
    head = f"[{action_name} {'ok' if ok else 'error'}]"
    return "\n".join(p for p in (head, output.rstrip(), note) if p)
