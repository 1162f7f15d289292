"""Training pairs (x, c) from recorded episodes.

x (`Pair.prompt`) is what the agent saw without hindsight: the first model call's prompt
of a `do` episode, or, for an imported commit, its message plus the code before it.
c (`Pair.context`) is what it knows after the episode: short lessons first (they teach
best, OPCD), then the user's correction, the accepted diff, the test failures met and
what fixed them, and the repository's conventions files. c is bounded by a token budget
(approximated as 4 characters a token) so the teacher's prompt stays affordable.

The held-out split hashes the episode id alone (no seed, no date), so an episode held
out once is held out every night and never trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from learnagent.store.records import Episode
from learnagent.store.redact import redact_text

CONVENTION_FILES = ("AGENTS.md", "CLAUDE.md", "CONVENTIONS.md", "CONTRIBUTING.md")
CHARS_PER_TOKEN = 4
HISTORY_SYSTEM = ("You are a coding agent working in the repository '{repo}'. Make the change the task asks "
                  "for and answer with a unified diff.")


@dataclass
class Pair:
    episode_id: str
    prompt: list[dict] | str  # x: chat messages without hindsight, or raw text to continue (mode "text")
    context: str  # c: experience
    target: str | None  # the accepted diff (or, in text form, the code written next), for SFT

    @property
    def mode(self) -> str:
        """"chat" (messages, chat template) or "text" (raw text the model continues; see rollout.encode)."""
        return "text" if isinstance(self.prompt, str) else "chat"


# ---------------------------------------------------------------- selection and split

def is_heldout(episode_id: str, fraction: float) -> bool:
    """Deterministic in the id alone: the same episodes are held out on every run."""
    h = int(hashlib.sha256(episode_id.encode()).hexdigest()[:8], 16) / 0x100000000
    return h < fraction


def _final_tests_passed(ep: Episode) -> bool:
    runs = ep.test_runs
    final = [r for r in runs if r.phase == "final"] or runs
    return bool(final) and final[-1].passed


def is_good(ep: Episode) -> bool:
    """Worth learning from: accepted, edited (with the correction in c), imported history,
    or an undecided `do` episode whose final tests passed. Needs a non-empty diff, kept whole (the
    store cuts a huge one: agent/run.py `stored_diff`; a cut one is no change to learn from)."""
    if not (ep.final_diff or "").strip() or ep.meta.get("final_diff_truncated"):
        return False
    outcome = ep.outcome
    if outcome in ("rejected", "reverted"):
        return False
    if outcome in ("accepted", "edited") or ep.source == "history":
        return True
    return outcome in ("pending", "kept") and _final_tests_passed(ep)


# ---------------------------------------------------------------- x

def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 15, 0)] + "\n…[truncated]"


def bound_messages(messages: list[dict], max_chars: int) -> list[dict]:
    """Halve the longest message until the prompt fits (the repo map is usually the culprit)."""
    messages = [dict(m) for m in messages]
    while sum(len(m["content"]) for m in messages) > max_chars:
        longest = max(messages, key=lambda m: len(m["content"]))
        if len(longest["content"]) < 64:
            break
        longest["content"] = _clip(longest["content"], len(longest["content"]) // 2)
    return messages


def _before_text(before) -> str:
    if isinstance(before, dict):  # {path: content}
        return "\n\n".join(f"--- {path}\n{content}" for path, content in before.items())
    return str(before or "")


def episode_prompt(ep: Episode, max_chars: int = 8000) -> list[dict]:
    """x for an episode: the first model call's prompt, or a synthesized one for history."""
    messages = ep.messages
    calls = ep.model_calls
    if ep.source != "history" and messages:
        if calls:
            seen = messages[: calls[0].n_prompt_messages]
        else:  # no model call recorded: everything before the first answer
            first_answer = next((i for i, m in enumerate(messages) if m.role == "assistant"), len(messages))
            seen = messages[:first_answer]
        if seen:
            return bound_messages([{"role": m.role, "content": m.content} for m in seen], max_chars)
    user = f"Task: {ep.task}"
    before = _before_text(ep.meta.get("before"))
    if before.strip():
        user += f"\n\nRelevant code before the change:\n{before}"
    system = HISTORY_SYSTEM.format(repo=ep.repo_name or "this repository")
    return bound_messages([{"role": "system", "content": system}, {"role": "user", "content": user}], max_chars)


# ---------------------------------------------------------------- c

_FILE_HEADER = re.compile(r"^\+\+\+ b/(.+)$", re.M)
_DEF = re.compile(r"^\+\s*(?:async\s+)?(?:def|class|function|fn|func|const|let|var)\s+([A-Za-z_]\w*)", re.M)


def diff_files(diff: str) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in _FILE_HEADER.findall(diff or "") if p.strip() != "/dev/null"))


def _naming_style(names: list[str]) -> str | None:
    snake = sum(1 for n in names if "_" in n.strip("_") and n == n.lower())
    camel = sum(1 for n in names if re.search(r"[a-z][A-Z]", n))
    if snake > camel:
        return "snake_case"
    if camel > snake:
        return "camelCase"
    return None


def lessons(ep: Episode) -> list[str]:
    """Short, heuristic lessons from an episode (what changed where, how it was checked)."""
    diff = ep.final_diff or ""
    out = []
    files = diff_files(diff)
    if files:
        out.append("Files changed: " + ", ".join(files[:8]) + (" …" if len(files) > 8 else ""))
        tests = [f for f in files if re.search(r"(^|/)(tests?/|test_)|_test\.|\.test\.|\.spec\.", f)]
        if tests:
            out.append("Tests were added or updated alongside the change: " + ", ".join(tests[:4]))
    names = list(dict.fromkeys(_DEF.findall(diff)))
    if names:
        style = _naming_style(names)
        out.append("New names: " + ", ".join(names[:8]) + (f" ({style})" if style else ""))
    passing = [r.command for r in ep.test_runs if r.passed]
    if passing:
        out.append(f"Test command: {passing[-1]}")
    return out


def test_story(ep: Episode, tail_lines: int = 6) -> str:
    """The failures met on the way and whether a later run passed."""
    runs = ep.test_runs
    parts = []
    for i, run in enumerate(runs):
        if run.passed:
            continue
        tail = "\n".join((run.output_tail or "").strip().splitlines()[-tail_lines:])
        fixed = any(r.passed for r in runs[i + 1:])
        why = "timed out" if run.timed_out else f"failed (exit {run.exit_code})"
        parts.append(f"`{run.command}` {why}:\n{tail}\n" +
                     ("It passed after the change above." if fixed else "It was not fixed."))
    return "\n\n".join(parts)


def conventions_text(root: Path | None, max_chars: int, header: str = "{name}:\n") -> str:
    """The repository's conventions files, each under `header` (code contexts use "# {name}\n", the
    form every file takes there), clipped to an equal share of `max_chars`, scrubbed of secrets."""
    if root is None:
        return ""
    found = [(name, (Path(root) / name)) for name in CONVENTION_FILES if (Path(root) / name).is_file()]
    if not found:
        return ""
    each = max_chars // len(found)
    # read from disk, not from the store: scrub here, or a token in AGENTS.md reaches training
    return "\n\n".join(header.format(name=name) + _clip(redact_text(path.read_text(errors="replace").strip()), each)
                       for name, path in found)


def experience_context(ep: Episode, conventions: str = "", max_tokens: int = 1024) -> str:
    """c: sections in priority order, each with its own share of the budget."""
    budget = max_tokens * CHARS_PER_TOKEN
    correction = ep.meta.get("correction")
    sections = [
        ("Lessons", "\n".join(f"- {line}" for line in lessons(ep)), 0.15),
        ("The user's correction to the agent's change", correction or "", 0.25),
        ("The accepted change", (ep.final_diff or "").strip(), 0.4),
        ("Test failures and what fixed them", test_story(ep), 0.15),
        ("Repository conventions", conventions, 0.25),
    ]
    text = ""
    for title, body, share in sections:
        if body and body.strip():
            room = budget - len(text)
            if room < 80:
                break
            text += f"## {title}\n{_clip(body.strip(), min(int(budget * share), room - len(title) - 5))}\n\n"
    return text.strip()


# ---------------------------------------------------------------- public API

def _episodes(store, repo_id: str) -> list[Episode]:
    return store.list_episodes(repo_id, limit=1_000_000)[::-1]  # oldest first


def without_files(ep: Episode, drop) -> Episode | None:
    """`ep` with the files `drop(path)` selects taken out of its diff and its code before; None
    when nothing of the diff is left."""
    sections = re.split(r"(?m)^(?=diff --git )", ep.final_diff or "")
    kept = [s for s in sections if s.strip() and not any(drop(p) for p in diff_files(s))]
    if len(kept) == len([s for s in sections if s.strip()]):
        return ep
    if not kept:
        return None
    meta = dict(ep.meta)
    if isinstance(meta.get("before"), dict):
        meta["before"] = {p: t for p, t in meta["before"].items() if not drop(p)}
    return dataclasses.replace(ep, final_diff="".join(kept), meta=meta)


def build_pairs(store, repo_id: str, *, conventions_root: Path | None = None, heldout_fraction: float = 0.2,
                seed: int = 0, exclude_ids=(), context_tokens: int = 1024, prompt_tokens: int = 2048,
                heldout_files=None) -> tuple[list[Pair], list[Pair]]:
    """(train, heldout) pairs of the repository's good episodes.

    `seed` only orders the training pairs (the split never depends on it); `exclude_ids`
    are left out of both lists. `heldout_files(path) -> bool` (code_pairs.heldout_file's split):
    training pairs lose those files' hunks and code, so held-out files never reach training.
    """
    import random

    conventions = conventions_text(conventions_root, context_tokens * CHARS_PER_TOKEN // 4)
    excluded = set(exclude_ids)
    train, heldout = [], []
    for summary in _episodes(store, repo_id):
        # cheap checks on the summary row before loading the whole episode
        if summary.id in excluded or summary.outcome in ("rejected", "reverted") \
                or not (summary.final_diff or "").strip():
            continue
        ep = store.get_episode(summary.id)
        if not is_good(ep):
            continue
        held = is_heldout(ep.id, heldout_fraction)
        if heldout_files is not None and not held:
            ep = without_files(ep, heldout_files)
            if ep is None:
                continue
        pair = Pair(episode_id=ep.id, prompt=episode_prompt(ep, prompt_tokens * CHARS_PER_TOKEN),
                    context=experience_context(ep, conventions, context_tokens),
                    target=(ep.final_diff or "").strip() or None)
        (heldout if held else train).append(pair)
    random.Random(seed).shuffle(train)
    return train, heldout


def replay_prompts(store, repo_id: str, exclude_ids, n: int, *, prompt_tokens: int = 2048) -> list[list[dict]]:
    """Up to `n` prompts x' of earlier episodes (any outcome) for the retention term, topped up
    with general coding prompts so retention also guards general ability."""
    from learnagent.learning.rollout import RETENTION_PROMPTS

    excluded = set(exclude_ids)
    ids = [e.id for e in _episodes(store, repo_id) if e.id not in excluded]
    ids.sort(key=lambda i: hashlib.sha256(i.encode()).hexdigest())  # a stable, spread-out choice
    prompts = [episode_prompt(store.get_episode(i), prompt_tokens * CHARS_PER_TOKEN) for i in ids[:n]]
    for general in RETENTION_PROMPTS:  # not GENERAL_PROMPTS: those measure drift (the gate, eval)
        if len(prompts) >= n:
            break
        prompts.append([dict(m) for m in general] if isinstance(general, list) else general)
    return prompts[:n]
