"""Repository values for tests that hand the store or the registry a repository (nothing below the
CLI resolves a bare path: the tests resolve theirs here, as the CLI edge would)."""

from __future__ import annotations

from pathlib import Path

from learnagent.core.repository import Repository, key_of


def folder_repository(path: Path | str) -> Repository:
    """A Repository for a plain folder that is no git checkout (store tests that only need a repository
    row): keyed by the folder's real path, the key a checkout there would have."""
    folder = Path(path).resolve()
    return Repository(work_tree=folder, main_tree=folder, git_dir=folder / ".git", common_dir=folder / ".git",
                      key=key_of(folder), name=folder.name)
