"""`.learnagentignore` (learnagent.core.ignore): defaults always on, gitignore syntax, worktrees."""

from __future__ import annotations

import pytest

from conftest import git
from learnagent.core.ignore import IgnoreRules


@pytest.mark.parametrize("path", [
    ".env", "config/.env", ".env.local", ".env.production", "certs/server.pem", "tls/private.key",
    "id_rsa", "home/.ssh/id_rsa.pub", "id_ed25519", "store.p12", "cert.pfx", ".npmrc", ".pypirc", ".netrc",
    "credentials.json", "gcp/credentials-prod.json", "secrets.yaml", "deploy/secrets.env",
    ".aws/credentials", "infra/terraform.tfstate", ".git/config", "./.env", "a/../.env",
])
def test_default_credential_files_are_ignored(tmp_path, path):
    rules = IgnoreRules.in_folder(tmp_path)
    assert rules.is_ignored(path)


@pytest.mark.parametrize("path", [
    "calc.py", "src/env.py", "environment.yml", ".env.example", "docs/keys.md", "src/keyboard.py",
    "tests/test_secrets_scanner.py", "README.md", "package.json", "credentials.py",
])
def test_ordinary_files_are_not_ignored(tmp_path, path):
    assert not IgnoreRules.in_folder(tmp_path).is_ignored(path)


def test_user_patterns_in_gitignore_syntax(tmp_path):
    (tmp_path / ".learnagentignore").write_text(
        "# private data\ndata/\n*.sqlite\n!data/schema.sql\n/top.txt\nnotes/**/draft*.md\n")
    rules = IgnoreRules.in_folder(tmp_path)
    assert rules.is_ignored("data/customers.csv")
    assert rules.is_ignored("db/app.sqlite")
    assert rules.is_ignored("top.txt") and not rules.is_ignored("sub/top.txt")
    assert rules.is_ignored("notes/a/b/draft-1.md") and not rules.is_ignored("notes/a/final.md")
    assert not rules.is_ignored("src/app.py")


def test_user_cannot_unignore_the_defaults(tmp_path):
    (tmp_path / ".learnagentignore").write_text("!.env\n!*.pem\n")
    rules = IgnoreRules.in_folder(tmp_path)
    assert rules.is_ignored(".env") and rules.is_ignored("a.pem")


def test_absolute_paths_and_paths_outside_the_repository(tmp_path):
    rules = IgnoreRules.in_folder(tmp_path)
    assert rules.is_ignored(tmp_path / "sub" / ".env")
    assert not rules.is_ignored(tmp_path / "sub" / "main.py")
    assert rules.is_ignored("../outside.py")
    assert rules.is_ignored(tmp_path.parent / "elsewhere.py")
    assert rules.filter(["a.py", ".env", "b/c.key", "b/c.py"]) == ["a.py", "b/c.py"]


def test_a_worktree_also_obeys_the_main_trees_uncommitted_ignore_file(git_repo, tmp_path):
    """The Repository names the main tree (resolved once, not looked up again): a linked worktree's
    rules are its own file's and the main tree's uncommitted one's; the folder alone has only its own."""
    from learnagent.core.repository import Repository

    (git_repo / ".learnagentignore").write_text("private/\n")  # not committed
    wt = tmp_path / "wt"
    git(git_repo, "worktree", "add", "-q", "-b", "learnagent/x", str(wt))
    (wt / ".learnagentignore").write_text("drafts/\n")
    rules = IgnoreRules.for_repository(Repository.at(wt))
    assert rules.root == wt.resolve() and rules.user_patterns == ["private/", "drafts/"]
    assert rules.is_ignored("private/notes.txt") and rules.is_ignored("drafts/a.py")
    assert not rules.is_ignored("calc.py")
    alone = IgnoreRules.in_folder(wt)
    assert alone.user_patterns == ["drafts/"] and not alone.is_ignored("private/notes.txt")
    assert IgnoreRules.for_repository(Repository.at(git_repo)).user_patterns == ["private/"]
