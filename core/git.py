"""Hardened git: every git process learnagent starts for an episode goes through `run`.

The rule (docs/SANDBOX.md, "What runs outside the sandbox"): learnagent runs git only on the
*user's* repository (their objects, refs and working tree, which the sandbox cannot reach) and on
an episode folder *before* the agent's first command. It never runs git with an agent-written
folder as work tree or git dir; it reads the agent's result itself (agent/snapshot.py). Even on the
user's repository, git here ignores everything that could start a program or change what a
plumbing command means:

- `GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`: no system or global config (no
  `core.fsmonitor`, `core.hooksPath`, `diff.external`, filter or textconv drivers, `includeIf`,
  `credential.helper` from there). The repository's own config is the user's and unreachable from
  the sandbox; on top of it the `-c` settings below switch off what could still run a program.
- `-c core.hooksPath=/dev/null`: no hook runs (`commit-tree`, `update-ref` run none anyway).
- `-c core.fsmonitor=false`, `-c core.untrackedCache=false`: no fsmonitor program, no index
  extensions written into the user's index (we never touch it: indexes here are private files).
- `-c core.attributesFile=/dev/null`, `GIT_ATTR_NOSYSTEM=1`: no attributes from outside the
  repository. Evidence for what git 2.39 reads in a tree-to-tree `git diff A B` (tests in
  tests/test_git_hardened.py): attributes come from the *work tree's* `.gitattributes` (then
  `info/attributes`), never from the trees being compared and not from the index when the work
  tree lacks the file; a `diff=evil` attribute whose driver has `textconv` and `command` set ran
  the external command with plain `git diff` and nothing with `--no-ext-diff --no-textconv`. So
  every diff here passes `DIFF_FLAGS`, and blobs are read with `cat-file` (never `show`, which
  can textconv) and written with `hash-object --no-filters` (no clean filter, no eol conversion).
- `-c protocol.allow=never`: no network (a partial clone's lazy fetch fails instead of running).
- `-c submodule.recurse=false`, `commit-tree --no-gpg-sign`: no recursion, no signing program.
- Inherited `GIT_*` variables are dropped (a `GIT_DIR`, `GIT_INDEX_FILE`,
  `GIT_EXTERNAL_DIFF` or `GIT_CONFIG_PARAMETERS` in the caller's environment would redirect or
  extend git); `GIT_TERMINAL_PROMPT=0`, `GIT_NO_REPLACE_OBJECTS=1` (what a commit holds is what
  its objects hold), `GIT_OPTIONAL_LOCKS=0`, `LC_ALL=C` (stable messages).
- `safe.directory` entries the user set in their system/global config are passed on with `-c`
  (git 2.39 honours `-c safe.directory`; tested): dropping the global file must not make git
  refuse a repository the user declared safe, and nothing else of that file is read.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path

from learnagent.core.errors import LearnagentError

ZERO_SHA1 = "0" * 40
DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", "--no-relative")

HARDENED_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.quotePath=false",
    "core.protectHFS=true",
    "core.protectNTFS=true",
    "protocol.allow=never",
    "submodule.recurse=false",
    "diff.external=",
    "commit.gpgSign=false",
)


class GitError(LearnagentError):
    """A git command learnagent needed failed; the message is git's last line."""


def hardened_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "LC_ALL": "C",
    })
    if extra:
        env.update(extra)
    return env


@functools.lru_cache(maxsize=1)
def _protected_safe_directories() -> tuple[str, ...]:
    """`safe.directory` values from the user's system and global config (read, never executed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_CONFIG_")}
    values: list[str] = []
    for scope in ("--system", "--global"):
        try:
            proc = subprocess.run(["git", "config", scope, "--get-all", "safe.directory"], cwd="/",
                                  capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        values += [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line]
    return tuple(values)


def argv(*args: str) -> list[str]:
    """The full command line for `git args...` with the hardening flags."""
    cmd = ["git"]
    for setting in HARDENED_CONFIG:
        cmd += ["-c", setting]
    for value in _protected_safe_directories():
        cmd += ["-c", f"safe.directory={value}"]
    return cmd + list(args)


def run(cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> bytes:
    """Run hardened `git args...` in `cwd`; stdout as bytes. GitError (one line) when it fails."""
    proc = subprocess.run(argv(*args), cwd=cwd, input=input, capture_output=True, env=hardened_env(env),
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_reason(proc.stderr, proc.returncode)}")
    return proc.stdout


def _reason(stderr: bytes, code: int) -> str:
    """git's own one-line reason: its first fatal/error line (hints follow it), else the last line."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else f"exit code {code}"


def text(cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
         check: bool = True) -> str:
    return run(cwd, *args, input=input, env=env, check=check).decode("utf-8", "replace")


def pipe(cwd1: Path, args1: list[str], cwd2: Path, args2: list[str], input: bytes) -> None:
    """`git args1 < input | git args2` (e.g. pack-objects into index-pack) without holding the pack in memory."""
    import threading

    first = subprocess.Popen(argv(*args1), cwd=cwd1, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=hardened_env())
    second = subprocess.Popen(argv(*args2), cwd=cwd2, stdin=first.stdout, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=hardened_env())
    first.stdout.close()  # the second process holds the read end now
    errors: dict[str, bytes] = {}
    reader = threading.Thread(target=lambda: errors.setdefault("first", first.stderr.read()), daemon=True)
    reader.start()
    first.stdin.write(input)
    first.stdin.close()
    err2 = second.stderr.read()
    second.wait()
    first.wait()
    reader.join()
    for proc, args, err in ((first, args1, errors.get("first", b"")), (second, args2, err2)):
        if proc.returncode != 0:
            raise GitError(f"git {args[0]} failed: {_reason(err, proc.returncode)}")


def succeeds(cwd: Path, *args: str) -> bool:
    return subprocess.run(argv(*args), cwd=cwd, capture_output=True, env=hardened_env(),
                          stdin=subprocess.DEVNULL).returncode == 0


# ---- objects ---------------------------------------------------------------------------

def object_format(repo: Path) -> str:
    """'sha1' or 'sha256': the hash the repository's object ids use (asked once per repository)."""
    return _object_format(Path(repo).resolve())


@functools.lru_cache(maxsize=64)
def _object_format(repo: Path) -> str:
    return text(repo, "rev-parse", "--show-object-format").strip() or "sha1"


def blob_hasher(fmt: str, size: int):
    """A hashlib object primed with git's blob header; feed it the content to get the blob id."""
    h = hashlib.new("sha256" if fmt == "sha256" else "sha1")
    h.update(b"blob %d\0" % size)
    return h


def blob_id(data: bytes, fmt: str = "sha1") -> str:
    h = blob_hasher(fmt, len(data))
    h.update(data)
    return h.hexdigest()


def ls_tree(repo: Path, treeish: str) -> dict[str, tuple[str, str]]:
    """Every entry of `treeish`, recursively: {path: (mode, object id)}; gitlinks included (160000)."""
    out = run(repo, "ls-tree", "-r", "-z", "--full-tree", treeish)
    entries: dict[str, tuple[str, str]] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        info, path = record.split(b"\t", 1)
        mode, _kind, oid = info.decode().split()
        entries[os.fsdecode(path)] = (mode, oid)
    return entries


def index_info(entries: dict[str, tuple[str, str]]) -> bytes:
    """`update-index -z --index-info` input for {path: (mode, id)}."""
    kind = {"160000": "commit", "040000": "tree"}
    return b"".join(f"{mode} {kind.get(mode, 'blob')} {oid}\t".encode() + os.fsencode(path) + b"\0"
                    for path, (mode, oid) in sorted(entries.items()))


def write_tree(repo: Path, entries: dict[str, tuple[str, str]], scratch: Path) -> str:
    """The tree holding exactly `entries`, built in a private index file (never the user's index)."""
    index = scratch / "index"
    index.unlink(missing_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    run(repo, "update-index", "-z", "--index-info", input=index_info(entries), env=env)
    return text(repo, "write-tree", env=env).strip()


def is_valid_ref(repo: Path, ref: str) -> bool:
    return succeeds(repo, "check-ref-format", ref)
