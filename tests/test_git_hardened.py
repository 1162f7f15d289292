"""core/git.py: the evidence for its comments, with real git (2.39 on the build machine).

Each test first shows the danger with plain git (so the test cannot pass vacuously), then that
the hardened form does not run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import git
from learnagent.core import git as G


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "ran"
    yield path


def _tip_with_attributes(repo: Path) -> tuple[str, str]:
    """base, tip where tip's tree carries `.gitattributes: * diff=evil` and a changed file."""
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "tip")
    (repo / ".gitattributes").write_text("* diff=evil\n")
    (repo / "calc.py").write_text("changed\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tip")
    tip = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    return base, tip


def test_tree_diff_reads_attributes_from_the_work_tree_only_and_runs_no_driver(git_repo, marker):
    base, tip = _tip_with_attributes(git_repo)
    git(git_repo, "config", "diff.evil.command", f"sh -c 'touch {marker}'")
    git(git_repo, "config", "diff.evil.textconv", f"sh -c 'touch {marker}; cat $1' -")
    # the compared trees' .gitattributes is not read (work tree has none): plain diff runs nothing
    git(git_repo, "diff", base, tip)
    git(git_repo, "--git-dir", str(git_repo / ".git"), "diff", base, tip)  # nor without a work tree
    assert not marker.exists()
    # the index's copy is not read either when the work tree lacks the file
    git(git_repo, "show", f"{tip}:.gitattributes")
    subprocess.run(["git", "update-index", "--add", "--cacheinfo",
                    f"100644,{git(git_repo, 'rev-parse', f'{tip}:.gitattributes').strip()},.gitattributes"],
                   cwd=git_repo, check=True)
    git(git_repo, "diff", base, tip)
    assert not marker.exists()
    git(git_repo, "reset", "-q")
    # the work tree's .gitattributes is: plain diff runs the driver ...
    (git_repo / ".gitattributes").write_text("* diff=evil\n")
    git(git_repo, "diff", base, tip)
    assert marker.exists()
    marker.unlink()
    # ... the hardened diff does not, and its text is git's own unified diff
    out = G.text(git_repo, "diff", *G.DIFF_FLAGS, base, tip)
    assert not marker.exists() and "+changed" in out


def test_no_hook_runs_in_the_users_repository(git_repo, marker):
    hook = git_repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    head = git(git_repo, "rev-parse", "HEAD").strip()
    git(git_repo, "update-ref", "refs/heads/plain", head)
    assert marker.exists()
    marker.unlink()
    G.run(git_repo, "update-ref", "refs/heads/learnagent/x", head)
    assert not marker.exists()


def test_global_config_and_inherited_git_variables_are_ignored(git_repo, marker, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = sh -c 'touch {marker}' -\n")
    monkeypatch.setenv("HOME", str(home))
    subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True)
    assert marker.exists()  # plain git runs the global fsmonitor
    marker.unlink()
    G.run(git_repo, "status", "--porcelain")
    assert not marker.exists()
    elsewhere = tmp_path / "elsewhere"
    subprocess.run(["git", "init", "-q", str(elsewhere)], check=True)
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='touch {marker}'")
    assert Path(G.text(git_repo, "rev-parse", "--absolute-git-dir").strip()) == git_repo / ".git"
    G.run(git_repo, "status", "--porcelain")
    assert not marker.exists()


def test_hash_object_no_filters_stores_the_bytes_as_they_are(git_repo, tmp_path, marker):
    (git_repo / ".gitattributes").write_text("* filter=evil text eol=crlf\n")
    git(git_repo, "config", "filter.evil.clean", f"sh -c 'touch {marker}; tr a-z A-Z'")
    data = tmp_path / "blob"
    data.write_bytes(b"lower case\r\n")
    oid = G.text(git_repo, "hash-object", "-w", "--no-filters", "--stdin-paths", input=f"{data}\n".encode()).strip()
    assert not marker.exists()
    assert G.run(git_repo, "cat-file", "blob", oid) == b"lower case\r\n"
    assert oid == G.blob_id(b"lower case\r\n")  # and snapshot.py's own hashing agrees with git


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chown") is None, reason="needs root to make a foreign-owned repo")
def test_safe_directory_from_the_users_global_config_is_kept(git_repo, tmp_path, monkeypatch):
    subprocess.run(["chown", "-R", "nobody", str(git_repo)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    G._protected_safe_directories.cache_clear()
    with pytest.raises(G.GitError, match="dubious ownership"):
        G.run(git_repo, "rev-parse", "HEAD")
    (home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {git_repo}\n")
    G._protected_safe_directories.cache_clear()
    try:
        assert len(G.text(git_repo, "rev-parse", "HEAD").strip()) == 40
    finally:
        G._protected_safe_directories.cache_clear()
