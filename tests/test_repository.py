"""The Repository value: one answer to "which repository?", resolved once at the edge."""

import dataclasses
import hashlib

import pytest
from conftest import git

from learnagent.core import home
from learnagent.core.errors import NotAGitRepo
from learnagent.core.repository import Repository, find_repository


def test_main_tree_from_anywhere_inside(git_repo):
    (git_repo / "pkg" / "sub").mkdir(parents=True)
    repo = find_repository(git_repo / "pkg" / "sub")
    real = git_repo.resolve()
    assert repo.work_tree == real and repo.main_tree == real and not repo.linked
    assert repo.git_dir == repo.common_dir == real / ".git"
    assert repo.name == "repo"
    assert repo.key == hashlib.sha1(str(real).encode()).hexdigest()[:12]  # the key episodes were stored under
    assert repo.worktrees_dir == home.data_home() / "worktrees" / repo.key
    assert repo.adapters_dir == home.data_home() / "adapters" / repo.key
    assert Repository.at(git_repo) == repo


def test_linked_worktree_shares_the_main_trees_key(git_repo, tmp_path):
    git(git_repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"))
    main, side = find_repository(git_repo), find_repository(tmp_path / "side")
    assert side.linked and side.work_tree == (tmp_path / "side").resolve()
    assert side.main_tree == main.main_tree and side.key == main.key and side.name == main.name
    assert side.common_dir == main.common_dir and side.git_dir.parent == main.common_dir / "worktrees"


def test_a_symlinked_path_gives_the_same_key(git_repo, tmp_path):
    (tmp_path / "link").symlink_to(git_repo)
    assert find_repository(tmp_path / "link").key == find_repository(git_repo).key


def test_the_value_is_frozen(git_repo):
    repo = find_repository(git_repo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        repo.key = "other"  # type: ignore[misc]


def test_no_repository_and_bare_repository_are_one_line_errors(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepo, match="not a git repository"):
        find_repository(tmp_path / "plain")
    with pytest.raises(NotAGitRepo, match="not a git repository"):
        find_repository(tmp_path / "missing")
    with pytest.raises(NotAGitRepo, match="not a git repository"):
        Repository.at(tmp_path / "plain")
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(NotAGitRepo, match="bare repository"):
        find_repository(tmp_path / "bare.git")


def test_the_store_and_registry_take_the_value_as_resolved(git_repo, tmp_path):
    """Given the Repository, the store files a linked worktree under its main tree and the registry
    uses its adapters folder: the same rows and folders a bare path of either tree gives."""
    from learnagent.learning.registry import Registry, adapters_folder, promoted_adapter
    from learnagent.store.episodes import Store

    git(git_repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"))
    side = Repository.at(tmp_path / "side")
    with Store() as store:
        assert store.ensure_repo(side) == store.ensure_repo(git_repo) == side.key
        assert [tuple(r) for r in store.conn.execute("SELECT path, name FROM repos")] == [(str(side.main_tree), "repo")]
        reg = Registry(store, side)
        assert reg.repo_id == side.key and reg.root == side.adapters_dir == adapters_folder(git_repo)
        assert promoted_adapter(side) is None and reg.current() is None


def test_a_stored_repository_keeps_its_adapters_under_its_key(tmp_path):
    """`sleep --store URL --repo NAME`: a team name (slashes) gets a path-safe folder of its own; a
    local key is the folder its checkout uses."""
    from learnagent.core import home
    from learnagent.core.repository import StoredRepository

    team = StoredRepository("github.com/acme/api", "api")
    assert team.adapters_dir.parent == home.data_home() / "adapters"
    assert team.adapters_dir.name.startswith("github.com_acme_api-") and team.work_tree is None
    assert StoredRepository("github.com/acme_api", "api").adapters_dir != team.adapters_dir
    assert StoredRepository("../x", "x").adapters_dir.parent == home.data_home() / "adapters"
    (tmp_path / "r").mkdir()
    assert StoredRepository(home.repo_key(tmp_path / "r"), "r").adapters_dir == home.adapters_dir(tmp_path / "r")
