"""`.learnagentignore`: files the agent may not read into an episode.

Gitignore syntax (pathspec's GitIgnoreSpec), in `<repo>/.learnagentignore`. On top of it a
default list of credential files is ALWAYS on: a user's `!pattern` can re-allow their own
patterns but not the defaults, because one forgotten `.env` read into an episode would then
sit in the store and in training data. The agent's read/search/list tools and the history
import call `IgnoreRules.is_ignored` before a file's content enters an episode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from learnagent.core.repository import Repository

IGNORE_FILE = ".learnagentignore"

# Credential and key files by their usual names. Templates committed on purpose
# (.env.example & co.) are exempt: they hold placeholders, and the agent needs them.
DEFAULT_PATTERNS = (
    ".env", ".env.*", "!.env.example", "!.env.sample", "!.env.template", "!.env.dist",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", "*.gpg",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".npmrc", ".pypirc", ".netrc", "_netrc", ".pgpass", ".my.cnf", ".git-credentials", ".htpasswd",
    "credentials*.json", "service-account*.json", "client_secret*.json",
    ".aws/credentials", ".docker/config.json", ".kube/config", "kubeconfig",
    "secrets.*", "*.secret", "*.secrets", "*.tfstate", "*.tfstate.*", "*.tfvars",
    ".git/",
)


@dataclass
class IgnoreRules:
    root: Path
    user_patterns: list[str] = field(default_factory=list)

    def __post_init__(self):
        from pathspec import GitIgnoreSpec  # pathspec is light, but keep `--help` imports minimal

        self._defaults = GitIgnoreSpec.from_lines(DEFAULT_PATTERNS)
        self._user = GitIgnoreSpec.from_lines(self.user_patterns)

    @classmethod
    def for_repository(cls, repo: Repository) -> "IgnoreRules":
        """The rules of the Repository's work tree: its own `.learnagentignore` and, in a linked
        worktree, the main tree's (maybe uncommitted) one too: a rule added a minute ago must already
        protect the run. What every caller holding the resolved Repository uses."""
        return cls._read(repo.work_tree, [repo.main_tree, repo.work_tree])

    @classmethod
    def in_folder(cls, folder: Path) -> "IgnoreRules":
        """The rules of one folder taken alone: its own `.learnagentignore` (no main tree looked up).
        For a folder that is no resolved Repository: a stored main tree (`push`), a plain folder, or
        a repo map / code mining / tools run on a folder by itself (tests, benchmarks)."""
        folder = Path(folder).resolve()
        return cls._read(folder, [folder])

    @classmethod
    def _read(cls, root: Path, folders: list[Path | None]) -> "IgnoreRules":
        lines: list[str] = []
        for folder in dict.fromkeys(folders):
            if folder is not None and (folder / IGNORE_FILE).is_file():
                lines += (folder / IGNORE_FILE).read_text(errors="replace").splitlines()
        return cls(root=root, user_patterns=lines)

    def rooted_at(self, root: Path) -> "IgnoreRules":
        """The same patterns for another folder: an episode's checkout obeys the user's rules as
        they were read from the user's working tree when the episode started."""
        return IgnoreRules(root=Path(root).resolve(), user_patterns=list(self.user_patterns))

    def relative(self, path: str | os.PathLike) -> str | None:
        """`path` as a POSIX path relative to the root; None when it lies outside the repository."""
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.root)
            except ValueError:
                return None
        parts: list[str] = []
        for part in PurePosixPath(str(p).replace("\\", "/")).parts:
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None
                parts.pop()
            else:
                parts.append(part)
        return "/".join(parts)

    def is_ignored(self, relpath: str | os.PathLike) -> bool:
        """True when the file may not be read into an episode (also: any path outside the repository)."""
        rel = self.relative(relpath)
        if rel is None:
            return True
        if not rel:
            return False  # the repository root itself
        return self.matches(rel)

    def matches(self, rel: str) -> bool:
        """`is_ignored` for a path already relative, POSIX and normalised (git's own paths):
        skips the normalisation, which costs as much as the matching."""
        return bool(self._defaults.match_file(rel) or self._user.match_file(rel))

    def filter(self, relpaths):
        """The paths that are not ignored, in order."""
        return [p for p in relpaths if not self.is_ignored(p)]
