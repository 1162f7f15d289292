"""The README's examples against the real CLI, so the two cannot drift apart.

- Every `learnagent …` command the README names (code blocks, their comments, inline code) must
  name commands and options that exist; each command's `--help` runs.
- Options named alone in a section (`--yes` under "do", `--wheel PATH` under "Models") must exist
  on that section's command.
- The "Using it" block runs for real, line by line, in a temporary repository with the scripted
  model set in the user's config (sleep and eval, which need a trainable model, run `--help`).
- The configuration block is a valid config file.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from cli_helpers import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION_COMMANDS = {  # a section's own command(s), for options the prose names alone
    "### do": ["do"], "### Learning": ["sleep"], "### Models": ["model install"], "### Outcomes": ["review"],
    "## Configuration": ["do", "init"], "## Using it": [""],
}
NEEDS_A_LOCAL_MODEL = {"sleep", "eval"}


def _blocks(text: str) -> list[tuple[str, str, list[str]]]:
    """(section, language, lines) of each fenced code block."""
    out, section, lang, lines = [], "", None, []
    for line in text.splitlines():
        if lang is None and line.startswith("#"):
            section = line.strip()
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                out.append((section, lang, lines))
                lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _split(line: str) -> tuple[str, str]:
    """A shell line's command and its comment (a # outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None:
            return line[:i].strip(), line[i + 1:]
    return line.strip(), ""


def mentions() -> list[tuple[str, list[str]]]:
    """(where, argv after `learnagent`) for every command the README names."""
    text = README.read_text()
    found = []
    for section, lang, lines in _blocks(text):
        if lang not in ("bash", "sh", ""):
            continue
        for line in lines:
            command, comment = _split(line)
            if command.startswith("learnagent "):
                argv = shlex.split(command)[1:]
                found.append((section, argv))
                found += [(section, argv + [opt]) for opt in re.findall(r"\((--[\w-]+)\)", comment)]
                for sibling in re.findall(r"`([\w-]+)[^`]*`", comment):  # adapters list …; `use VERSION`
                    found.append((section, argv[:-1] + [sibling]))
            for inner in re.findall(r"learnagent ([^)`#]+)", comment):
                found.append((section, shlex.split(inner)))
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip()
        for span in re.findall(r"`learnagent ([^`]+)`", line):
            alternatives = [shlex.split(part) for part in _expand(span)]
            found += [(section, argv) for argv in alternatives]
    return found


def _expand(span: str) -> list[str]:
    """`accept|reject ID` -> ["accept ID", "reject ID"]; `forget ID|--since|--all` -> three spans."""
    words = span.split()
    spans = [[]]
    for word in words:
        options = word.split("|") if "|" in word and not word.startswith('"') else [word]
        spans = [s + [o] for s in spans for o in options]
    return [" ".join(s) for s in spans]


def section_options() -> list[tuple[str, str]]:
    """(section, --option) for options the prose names alone, in inline code."""
    found, section = [], ""
    for line in README.read_text().splitlines():
        if line.startswith("#"):
            section = line.strip()
        found += [(section, span.split()[0]) for span in re.findall(r"`(--[\w-]+[^`]*)`", line)]
    return found


def _resolve(argv: list[str]):
    """(command path, the click command, the options it was given) — failing on an unknown command."""
    from learnagent.cli.app import build_command

    command, path, rest = build_command(), [], list(argv)
    while rest and hasattr(command, "commands") and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    assert not hasattr(command, "commands") or not rest or rest[0].startswith("-"), \
        f"`learnagent {' '.join(argv)}`: no command '{rest[0]}' in `learnagent {' '.join(path)}`"
    return path, command, [word.split("=")[0] for word in rest if word.startswith("--")]


def _options(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}


def test_every_command_and_option_the_readme_names_exists(tmp_path):
    seen = mentions()
    assert len(seen) > 25, seen  # the parser still finds the README's examples
    paths = set()
    for where, argv in seen:
        path, command, options = _resolve(argv)
        unknown = [opt for opt in options if opt not in _options(command)]
        assert not unknown, f"{where}: `learnagent {' '.join(argv)}` names {unknown}, which it does not have"
        paths.add(tuple(path))
    for section, option in section_options():
        commands = SECTION_COMMANDS.get(section)
        assert commands, f"README section {section} names {option}: say which command it belongs to here"
        assert any(option in _options(_resolve(c.split())[1]) for c in commands), f"{section}: {option} is on none of {commands}"
    for path in sorted(paths):
        out = run_cli(*path, "--help", cwd=tmp_path)
        assert out.returncode == 0 and "Usage: learnagent" in out.stdout, (path, out.stderr)


def test_the_configuration_block_is_a_valid_config(tmp_path, monkeypatch):
    from learnagent.core.config import load_config

    blocks = [lines for _section, lang, lines in _blocks(README.read_text()) if lang == "toml"]
    assert blocks
    user = tmp_path / "config.toml"
    user.write_text("\n".join(blocks[0]) + "\n")
    monkeypatch.setenv("LEARNAGENT_CONFIG", str(user))
    cfg = load_config(tmp_path)  # unknown sections, keys or types raise
    assert cfg.model.name == "smollm2" and cfg.test.command


def test_the_using_it_block_runs_for_real(git_repo, tmp_path, monkeypatch):
    """The scripted demo model from the user's config; ids in the examples become real ones."""
    config = tmp_path / "user.toml"
    config.write_text('[model]\nname = "scripted:demo"\n')
    monkeypatch.setenv("LEARNAGENT_CONFIG", str(config))
    block = next(lines for section, lang, lines in _blocks(README.read_text()) if section == "## Using it")
    ran = []
    for line in block:
        command, _comment = _split(line)
        if not command.startswith("learnagent "):
            continue
        argv = shlex.split(command)[1:]
        if argv[0] in NEEDS_A_LOCAL_MODEL:
            argv.append("--help")
        if argv[0] in ("show", "apply"):
            kept = [e for e in json.loads(run_cli("log", "--json", cwd=git_repo).stdout) if e["source"] == "do"]
            assert kept, "the README's `do` line left no episode"
            argv[1] = kept[0]["id"][:14]
        if argv[0] == "report":
            argv[argv.index("--out") + 1] = str(tmp_path / "curve.png")
        out = run_cli(*argv, cwd=git_repo, env={"COLUMNS": "120"}, timeout=300)
        assert out.returncode == 0, f"`learnagent {' '.join(argv)}`: {out.stderr}{out.stdout}"
        assert "Traceback" not in out.stderr
        ran.append(argv[0])
    assert {"init", "history", "do", "log", "show", "apply", "status", "report", "adapters"} <= set(ran)
    assert (git_repo / "LEARNAGENT_DEMO.md").exists()  # `apply ID` applied the demo's kept branch
    assert (tmp_path / "curve.png").stat().st_size > 0


@pytest.mark.parametrize("span,expected", [("accept|reject ID", ["accept ID", "reject ID"]),
                                           ("forget ID|--since|--all", ["forget ID", "forget --since", "forget --all"])])
def test_expand_alternatives(span, expected):
    assert _expand(span) == expected
