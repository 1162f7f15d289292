"""The Repository value: one answer to "which repository?", resolved once at the edge."""

import dataclasses
import hashlib

import pytest
from conftest import git
from repo_helpers import folder_repository

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
    uses its adapters folder: the same rows and folders the main tree's value gives. A bare path is
    refused: nothing below the CLI resolves one."""
    from learnagent.learning.registry import Registry, list_adapters, promoted_adapter
    from learnagent.store.episodes import Store

    git(git_repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"))
    side = Repository.at(tmp_path / "side")
    with Store() as store:
        assert store.ensure_repo(side) == store.ensure_repo(Repository.at(git_repo)) == side.key
        assert [tuple(r) for r in store.conn.execute("SELECT path, name FROM repos")] == [(str(side.main_tree), "repo")]
        reg = Registry(store, side)
        assert reg.repo_id == side.key and reg.root == side.adapters_dir == Repository.at(git_repo).adapters_dir
        assert promoted_adapter(side) is None and reg.current() is None
        for bare in (lambda: store.ensure_repo(git_repo), lambda: Registry(store, git_repo),
                     lambda: promoted_adapter(git_repo), lambda: list_adapters(str(git_repo), store)):
            with pytest.raises(TypeError, match="Repository"):
                bare()


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
    local = folder_repository(tmp_path / "r")
    assert StoredRepository(local.key, "r").adapters_dir == local.adapters_dir


# Where "which repository?" may still be answered from a bare path: the definitions themselves, and
# the edges that resolve it once (the CLI, and the git-hook entry, which git starts in the checkout).
# The resolvers: find_repository / find_repo (git's discovery), Repository.at / Repository(...) (a
# value made from a path), gitdirs.git_dirs / main_worktree (git's files read again), gitutil.main_root /
# toplevel, and git asked where the repository is (`rev-parse --show-toplevel`, `--git-common-dir`, ...).
# core/home's repo_key / repository_root / worktrees_dir / adapters_dir of a path are gone (tests use
# `Repository.at(path)`); they stay listed so that bringing one back fails here.
RESOLVERS = {"find_repository", "find_repo", "repo_key", "repository_root", "worktrees_dir", "adapters_dir",
             "main_root", "toplevel", "git_dirs", "main_worktree"}
RESOLVER_MODULES = {"home": {"repo_key", "repository_root", "worktrees_dir", "adapters_dir"},
                    "gitutil": {"main_root", "toplevel"}, "gitdirs": {"git_dirs", "main_worktree"}}
GIT_WHERE = {"--show-toplevel", "--git-common-dir", "--git-dir", "--absolute-git-dir", "--show-cdup",
             "--show-prefix", "--show-superproject-working-tree"}
EDGES = {
    # defines the value: Repository.at reads git's files (git_dirs), find_repository asks git once
    "core/repository.py": {"find_repository", "git_dirs", "Repository.at", "Repository(", "--show-toplevel"},
    "core/gitdirs.py": {"git_dirs"},  # defines it
    "agent/worktree.py": {"find_repository"},  # find_repo: the CLI edge's resolver (+ HEAD checks)
    "services/settle_outcomes.py": {"find_repository"},  # the git-hook entry: an edge of its own
}


def _resolver_uses(path, source: str) -> set[tuple[int, str]]:
    """(line, name) of each place `source` reaches a repository resolver: `find_repository` /
    `find_repo` / `git_dirs` / `main_worktree` by any route, `home.<resolver>` / `gitutil.<resolver>` /
    `gitdirs.<resolver>`, one of them imported from learnagent.core.home / store.gitutil / core.gitdirs /
    core.repository, `Repository.at(...)` or `Repository(...)`, or a git option that asks where the
    repository is."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Name) and node.id in ("find_repository", "find_repo", "git_dirs", "main_worktree"):
            found.add((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in ("find_repository", "find_repo"):
            found.add((node.lineno, node.attr))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.attr in RESOLVER_MODULES.get(node.value.id, ()):
            found.add((node.lineno, node.attr))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "Repository" and node.attr == "at":
            found.add((node.lineno, "Repository.at"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Repository":
            found.add((node.lineno, "Repository("))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in GIT_WHERE:
            found.add((node.lineno, node.value))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                ("core.home", "store.gitutil", "core.repository", "agent.worktree", "core.gitdirs")):
            found |= {(node.lineno, a.name) for a in node.names if a.name in RESOLVERS}
    return found


def test_nothing_below_the_cli_resolves_the_repository_again():
    """One Repository, resolved at the edge and passed down (issue 13): below cli/, no module reaches
    a resolver (the list above) on a bare path, except the EDGES above; `.learnagentignore` rules and
    git's excludes come from the Repository too (IgnoreRules.for_repository, GitExcludes.for_repository)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("agent", "core", "learning", "runtime", "sandbox", "services", "store"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = str(path.relative_to(root))
            allowed = EDGES.get(rel, set())
            found += [f"{rel}:{line} {name}" for line, name in sorted(_resolver_uses(path, path.read_text()))
                      if name not in allowed]
    assert found == []


def test_the_resolver_scan_sees_each_route():
    """The scan above can fail: each way of reaching a resolver is caught (and a parameter that is
    merely named `repo_key`, as runtime/serving.py has, is not)."""
    sources = {
        "from learnagent.core.repository import find_repository\nfind_repository('.')\n": {"find_repository"},
        "from learnagent.core import home\nhome.repo_key(p)\n": {"repo_key"},
        "from learnagent.core.home import repository_root\n": {"repository_root"},
        "from learnagent.store import gitutil\ngitutil.main_root(p)\ngitutil.toplevel(p)\n": {"main_root",
                                                                                               "toplevel"},
        "import learnagent.agent.worktree as wt\nwt.find_repo()\n": {"find_repo"},
        "from learnagent.core.gitdirs import main_worktree\nmain_worktree(p)\n": {"main_worktree"},
        "from learnagent.core import gitdirs\ngitdirs.git_dirs(p)\n": {"git_dirs"},
        "from learnagent.core.repository import Repository\nRepository.at(p)\n": {"Repository.at"},
        "Repository(work_tree=p, main_tree=p, git_dir=p, common_dir=p, key='k', name='n')\n": {"Repository("},
        "G.text(root, 'rev-parse', '--path-format=absolute', '--git-common-dir')\n": {"--git-common-dir"},
        "def served(repo_key: str):\n    return repo_key\n": set(),
        "def f(repo: Repository):\n    return IgnoreRules.for_repository(repo), repo.main_tree\n": set(),
    }
    for source, names in sources.items():
        assert {name for _line, name in _resolver_uses("x.py", source)} == names, source
