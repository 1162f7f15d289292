"""Install, chain and remove the git hooks that record outcomes.

Hooks go where git looks for them (`git rev-parse --git-path hooks`, which honours a local or
global `core.hooksPath`). A hook that is already there is never overwritten: it is renamed to
`<hook>.learnagent-prev` (a rename keeps its bytes, mode bits and even a symlink as they were),
and our wrapper runs it first with the same arguments and stdin and exits with ITS exit code.
`uninstall_hooks` removes the wrapper and renames the previous hook back, so the folder is
exactly as before. If the `pre-commit` framework later moved our wrapper to `<hook>.legacy`,
uninstall finds it there too.

Our part of the wrapper can never fail a commit: it runs `python -m learnagent.services.settle_outcomes`
(the hook entry, which imports no typer/rich/torch and catches everything, logging to
`data_home()/hooks.log`), its stderr is discarded and its status ignored. Hooks installed by earlier
versions run `python -m learnagent.core.githooks`, which hands over to the same entry (bottom of this file).
Set LEARNAGENT_HOOKS_DISABLE=1 to skip it for one command.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HOOK_NAMES = ("post-commit", "post-merge", "post-rewrite")
MARKER = "# learnagent-hook v1"
PREV_SUFFIX = ".learnagent-prev"
MANIFEST = ".learnagent-hooks.json"  # remembers whether we created the hooks folder


def hooks_dir(repo_root: Path) -> Path:
    out = subprocess.run(["git", "rev-parse", "--git-path", "hooks"], cwd=repo_root, capture_output=True, text=True)
    if out.returncode != 0:
        from learnagent.core.errors import NotAGitRepo

        raise NotAGitRepo(f"not a git repository: {repo_root}")
    path = Path(out.stdout.strip()).expanduser()
    return path if path.is_absolute() else (Path(repo_root) / path).resolve()


def hook_script(name: str, python: str | None = None) -> str:
    py = shlex.quote(python or sys.executable)
    lines = [
        "#!/bin/sh",
        f"{MARKER}: records what became of learnagent's proposed edits.",
        "# Installed by `learnagent hooks install`; `learnagent hooks uninstall` removes it and puts the",
        f"# previous hook back (it is kept next to this one as {name}{PREV_SUFFIX} and runs first).",
        f'prev="$(dirname "$0")/{name}{PREV_SUFFIX}"',
        "status=0",
    ]
    if name == "post-rewrite":  # both hooks need the old->new list git writes on stdin
        lines += [
            'input=$(mktemp "${TMPDIR:-/tmp}/learnagent-hook.XXXXXX") || input=/dev/null',
            '[ "$input" = /dev/null ] || cat > "$input"',
            'if [ -x "$prev" ]; then "$prev" "$@" < "$input"; status=$?; fi',
        ]
        feed = '< "$input"'
    else:
        lines += ['if [ -x "$prev" ]; then "$prev" "$@"; status=$?; fi']
        feed = "< /dev/null"
    lines += [
        'if [ -z "$LEARNAGENT_HOOKS_DISABLE" ]; then',
        f"  if [ -x {py} ]; then",
        f'    {py} -m learnagent.services.settle_outcomes {name} "$@" {feed} 2>/dev/null || true',
        "  elif command -v learnagent >/dev/null 2>&1; then",
        f'    learnagent hook {name} "$@" {feed} 2>/dev/null || true',
        "  fi",
        "fi",
    ]
    if name == "post-rewrite":
        lines.append('[ "$input" = /dev/null ] || rm -f "$input"')
    lines.append("exit $status")
    return "\n".join(lines) + "\n"


def _is_ours(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and MARKER in path.read_text(errors="replace")[:400]
    except OSError:
        return False


def _write_hook(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.learnagent-tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def install_hooks(repo_root: Path, python: str | None = None) -> list[str]:
    """Install (or refresh) our hooks, chaining any existing ones; returns what was done."""
    folder = hooks_dir(repo_root)
    done: list[str] = []
    manifest = folder / MANIFEST
    if not folder.exists():
        folder.mkdir(parents=True)
        manifest.write_text(json.dumps({"created_dir": True}) + "\n")
        done.append(f"created {folder}")
    elif not manifest.exists():
        manifest.write_text(json.dumps({"created_dir": False}) + "\n")
    for name in HOOK_NAMES:
        path = folder / name
        prev = folder / (name + PREV_SUFFIX)
        text = hook_script(name, python)
        if _is_ours(path) or _is_ours(path.with_name(name + ".legacy")):
            target = path if _is_ours(path) else path.with_name(name + ".legacy")
            if target.read_text() != text:
                _write_hook(target, text)
                done.append(f"{name}: updated")
            else:
                done.append(f"{name}: already installed")
            continue
        if os.path.lexists(path):
            if os.path.lexists(prev):
                done.append(f"{name}: skipped ({prev.name} already exists; move it away and retry)")
                continue
            os.rename(path, prev)
            _write_hook(path, text)
            done.append(f"{name}: installed (chained to the existing hook, kept as {prev.name})")
        else:
            _write_hook(path, text)
            done.append(f"{name}: installed")
    return done


def uninstall_hooks(repo_root: Path) -> list[str]:
    """Remove our hooks and restore the previous ones exactly; returns what was done."""
    folder = hooks_dir(repo_root)
    done: list[str] = []
    if not folder.exists():
        return ["no hooks folder: nothing to remove"]
    for name in HOOK_NAMES:
        prev = folder / (name + PREV_SUFFIX)
        # `pre-commit install` renames an existing hook to <hook>.legacy and calls it
        spots = [folder / name, folder / (name + ".legacy")]
        ours = next((p for p in spots if _is_ours(p)), None)
        if ours is None:
            done.append(f"{name}: not installed")
            continue
        ours.unlink()
        if os.path.lexists(prev):
            os.rename(prev, ours)
            done.append(f"{name}: removed; previous hook restored")
        else:
            done.append(f"{name}: removed")
    manifest = folder / MANIFEST
    created = False
    if manifest.exists():
        try:
            created = bool(json.loads(manifest.read_text()).get("created_dir"))
        except ValueError:
            created = False
        manifest.unlink()
    if created and not any(folder.iterdir()):
        folder.rmdir()
        done.append(f"removed {folder}")
    return done


def hooks_status(repo_root: Path) -> list[dict]:
    folder = hooks_dir(repo_root)
    out = []
    for name in HOOK_NAMES:
        path = folder / name
        installed = _is_ours(path) or _is_ours(folder / (name + ".legacy"))
        out.append({"hook": name, "path": str(path), "installed": installed,
                    "chained": os.path.lexists(folder / (name + PREV_SUFFIX)),
                    "other_hook": os.path.lexists(path) and not installed})
    return out


# ---------------------------------------------------------------- hooks installed by earlier versions

if __name__ == "__main__":
    # Hooks installed before the hook entry moved run `python -m learnagent.core.githooks <hook> ...`:
    # hand over to the entry (services/settle_outcomes.py) in this process. By module name, not by
    # import: core sits below services in the layer contract, and this is the only way in from here.
    import runpy

    runpy.run_module("learnagent.services.settle_outcomes", run_name="__main__", alter_sys=True)
