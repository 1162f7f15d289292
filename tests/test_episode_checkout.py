"""The episode folder and its result, in-process with real git: agent/worktree.py, snapshot.py, accept.py.

The checkout is byte-exact and leaves out what `.learnagentignore` hides; the result is read by a
walk that records what `git add -A` would have (gitignore, build artifacts, symlinks as symlinks,
the executable bit), keeps what the agent could not see, and refuses what cannot be recorded
safely. Accept never writes through a symlink. The CLI-level attacks are in test_adversarial_git.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import git
from learnagent.agent import worktree as wt
from learnagent.core.repository import Repository
from repo_guard import assert_intact, capture


@pytest.fixture
def repo(git_repo):
    """The test repository with the shapes that matter: attributes that would convert on checkout,
    a tracked file `.learnagentignore`'s defaults hide, a symlink, an executable, a submodule,
    a gitignored folder with one tracked file in it."""
    (git_repo / ".gitattributes").write_text("* text=auto eol=crlf ident\n*.txt filter=upper\n")
    (git_repo / "notes.txt").write_text("$Id$\nline\n")
    (git_repo / "config").mkdir()
    (git_repo / "config" / "secrets.yaml").write_text("token: TRACKED-SECRET-7f3a\n")
    (git_repo / "config" / "app.yaml").write_text("name: app\n")
    (git_repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (git_repo / "run.sh").chmod(0o755)
    (git_repo / "link-to-calc").symlink_to("calc.py")
    (git_repo / ".gitignore").write_text("build/\n*.log\n")
    (git_repo / "build").mkdir()
    (git_repo / "build" / "keep.txt").write_text("tracked in an ignored folder\n")
    git(git_repo, "add", "-A")
    git(git_repo, "add", "-f", "build/keep.txt")
    head = git(git_repo, "rev-parse", "HEAD").strip()
    git(git_repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/sub")
    git(git_repo, "config", "filter.upper.smudge", "tr a-z A-Z")  # would change the checkout if it ran
    git(git_repo, "commit", "-q", "-m", "shapes")
    return git_repo


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def _tree(repo: Path, rev: str) -> dict[str, tuple[str, str]]:
    out = git(repo, "ls-tree", "-r", "--full-tree", rev)
    return {line.split("\t", 1)[1]: (line.split()[0], line.split()[2]) for line in out.splitlines()}


def _show(repo: Path, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "cat-file", "blob", f"{rev}:{path}"], cwd=repo, capture_output=True,
                          check=True).stdout


def _commit(repo: Path, path: Path, branch: str, **kw) -> str | None:
    return wt.commit_all(Repository.at(repo), path, base=_head(repo), branch=branch, message="learnagent: test", **kw)


# ---------------------------------------------------------------- the checkout

def test_checkout_is_byte_exact_own_repository_without_hidden_files(repo):
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", base)
    assert path.parent == Repository.at(repo).worktrees_dir and branch == "learnagent/ep1"
    assert git(repo, "rev-parse", "refs/heads/learnagent/ep1").strip() == base  # the episode branch, at the base
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1  # not a linked worktree
    assert (path / ".git").is_dir() and not (path / ".git" / "hooks").exists()  # no templates, no hooks
    # byte for byte: no CRLF, no $Id$ expansion, no smudge filter
    assert (path / "notes.txt").read_bytes() == _show(repo, base, "notes.txt") == b"$Id$\nline\n"
    assert (path / "calc.py").read_bytes() == _show(repo, base, "calc.py")
    assert os.readlink(path / "link-to-calc") == "calc.py" and os.access(path / "run.sh", os.X_OK)
    assert (path / "vendor" / "sub").is_dir() and not any((path / "vendor" / "sub").iterdir())
    # hidden: not in the folder, not in the folder's objects
    assert not (path / "config" / "secrets.yaml").exists() and (path / "config" / "app.yaml").exists()
    secret_blob = _tree(repo, base)["config/secrets.yaml"][1]
    objects = git(path, "cat-file", "--batch-all-objects", "--batch-check")
    assert secret_blob not in objects and "TRACKED-SECRET" not in git(path, "log", "-p")
    # the agent's git works on a clean state
    assert git(path, "status", "--porcelain") == "" and git(path, "branch", "--show-current").strip() == branch


def test_unchanged_folder_records_nothing(repo):
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    assert _commit(repo, path, branch) is None
    assert git(repo, "rev-parse", f"refs/heads/{branch}").strip() == _head(repo)


# ---------------------------------------------------------------- reading the result

def test_result_holds_what_git_add_all_would(repo):
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", base)
    (path / "calc.py").write_text("def add(a, b):\n    return b + a\n")                # modified
    (path / "test_calc.py").unlink()                                                # deleted
    (path / "pkg").mkdir()
    (path / "pkg" / "new.py").write_text("X = 1\n")                                  # added
    (path / "tool.sh").write_text("#!/bin/sh\n")
    (path / "tool.sh").chmod(0o755)                                                 # added, executable
    (path / "run.sh").chmod(0o644)                                                  # mode change only
    (path / "out").symlink_to("/etc/passwd")                                        # a symlink, recorded as one
    (path / "app.log").write_text("gitignored\n")                                   # untracked + ignored: skipped
    (path / "build" / "keep.txt").write_text("changed\n")                           # tracked under ignored folder
    (path / "build" / "new.o").write_text("gitignored folder\n")                    # skipped
    (path / "pkg" / "__pycache__").mkdir()
    (path / "pkg" / "__pycache__" / "new.cpython-311.pyc").write_bytes(b"\0pyc")  # artifact: skipped
    (path / ".learnagent").mkdir()
    (path / ".learnagent" / "x").write_text("info/exclude lists .learnagent\n")
    wt.exclude_learnagent_files(Repository.at(repo))
    tip = _commit(repo, path, branch)
    assert tip and git(repo, "rev-parse", f"refs/heads/{branch}").strip() == tip
    assert git(repo, "rev-parse", f"{tip}^").strip() == base
    tree = _tree(repo, tip)
    assert set(tree) == {".gitattributes", ".gitignore", "build/keep.txt", "calc.py", "config/app.yaml",
                         "config/secrets.yaml", "link-to-calc", "notes.txt", "out", "pkg/new.py", "run.sh",
                         "tool.sh", "vendor/sub"}
    assert tree["tool.sh"][0] == "100755" and tree["run.sh"][0] == "100644" and tree["out"][0] == "120000"
    assert _show(repo, tip, "out") == b"/etc/passwd" and tree["vendor/sub"][0] == "160000"
    # what the agent could not see stays exactly as it was in the base
    assert tree["config/secrets.yaml"] == _tree(repo, base)["config/secrets.yaml"]
    assert _show(repo, tip, "build/keep.txt") == b"changed\n"
    assert wt.changed_paths(repo, base, tip) == [("M", "build/keep.txt"), ("M", "calc.py"), ("A", "out"),
                                                 ("A", "pkg/new.py"), ("M", "run.sh"), ("D", "test_calc.py"),
                                                 ("A", "tool.sh")]
    diff = wt.diff(repo, base, tip)
    assert "+    return b + a" in diff and "secrets" not in diff and diff.startswith("diff --git a/")


def test_non_utf8_names_and_binary_content(repo):
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    name = os.fsdecode(b"caf\xe9.bin")
    (path / name).write_bytes(bytes(range(256)))
    tip = _commit(repo, path, branch)
    out = subprocess.run(["git", "ls-tree", "-z", "--name-only", tip], cwd=repo, capture_output=True).stdout
    assert b"caf\xe9.bin" in out.split(b"\0")
    assert "GIT binary patch" in wt.diff(repo, _head(repo), tip)


@pytest.mark.parametrize("attack,message", [
    ("nested", "nested git repository"),
    ("gitfile", "nested git repository"),
    ("upper", "nested git repository"),
    ("submodule_files", "inside submodule vendor/sub"),
    ("fifo", "a FIFO"),
    ("socket", "a socket"),
    ("new_env", "touches .env, which .learnagentignore hides"),
    ("append_hidden", "touches config/secrets.yaml"),
    ("folder_to_link", "replaced folder config"),
    ("gitmodules_link", "symbolic link"),
])
def test_unsafe_results_are_refused_and_nothing_moves(repo, attack, message, monkeypatch):
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", base)
    before = capture(repo)
    if attack == "nested":
        git(path / "config", "init", "-q", ".")
    elif attack == "gitfile":
        (path / "config" / ".git").write_text(f"gitdir: {repo}/.git\n")
    elif attack == "upper":
        (path / "config" / ".GIT").mkdir()
    elif attack == "submodule_files":
        (path / "vendor" / "sub" / "x.py").write_text("x\n")
    elif attack == "fifo":
        os.mkfifo(path / "pipe")
    elif attack == "socket":
        sock = socket.socket(socket.AF_UNIX)
        monkeypatch.chdir(path)  # a socket path has a 108-byte limit
        sock.bind("sock")
        sock.close()
    elif attack == "new_env":
        (path / ".env").write_text("API_KEY=from-agent\n")
    elif attack == "append_hidden":
        (path / "config" / "secrets.yaml").write_text("appended\n")
    elif attack == "folder_to_link":
        import shutil

        shutil.rmtree(path / "config")
        (path / "config").symlink_to("/etc")
    elif attack == "gitmodules_link":
        (path / ".gitmodules").symlink_to("/etc/passwd")
    with pytest.raises(wt.UnsafeChange) as err:
        _commit(repo, path, branch)
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 5
    assert git(repo, "rev-parse", f"refs/heads/{branch}").strip() == base
    assert_intact(repo, before)


def test_an_unreadable_folder_is_refused_not_skipped(repo, monkeypatch):
    """A folder the agent made unreadable (chmod 000; root reads it anyway, so the denial is
    simulated) would hide its files from the walk: refused, not recorded as deleted."""
    from learnagent.agent import snapshot

    path, branch = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    real_scandir = os.scandir

    def denied(folder):
        if Path(folder).name == "config":
            raise PermissionError(13, "Permission denied")
        return real_scandir(folder)
    monkeypatch.setattr(snapshot.os, "scandir", denied)
    with pytest.raises(wt.UnsafeChange, match="cannot read the folder config .*Permission denied"):
        _commit(repo, path, branch)


def test_branch_moves_only_from_where_learnagent_put_it(repo):
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", base)
    (path / "calc.py").write_text("changed\n")
    git(repo, "commit", "-q", "--allow-empty", "-m", "user work")
    git(repo, "branch", "-f", branch, "HEAD")  # something else moved the episode branch
    with pytest.raises(wt.LearnagentError, match="update-ref failed"):
        wt.commit_all(Repository.at(repo), path, base=base, branch=branch, message="m")
    with pytest.raises(wt.LearnagentError, match="not an episode branch"):
        wt.commit_all(Repository.at(repo), path, base=base, branch="main", message="m")


def test_agent_git_config_never_runs(repo, tmp_path):
    """The agent's own repository may name any program; reading its result runs none of them."""
    marker = tmp_path / "ran"
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    payload = f"touch {marker}"
    for key in ("core.fsmonitor", "core.hooksPath", "diff.external", "filter.evil.clean", "filter.evil.smudge",
                "filter.evil.process", "diff.evil.textconv", "diff.evil.command", "core.pager", "core.editor"):
        git(path, "config", key, payload)
    git(path, "config", "include.path", str(path / "evil.cfg"))
    (path / "evil.cfg").write_text(f"[core]\n\tfsmonitor = {payload}\n")
    (path / ".git" / "hooks").mkdir()
    for hook in ("pre-commit", "post-commit", "reference-transaction", "post-index-change", "fsmonitor-watchman"):
        (path / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\n{payload}\n")
        (path / ".git" / "hooks" / hook).chmod(0o755)
    (path / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    (path / "calc.py").write_text("changed\n")
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # where its commit would land
    tip = _commit(repo, path, branch)
    diff = wt.diff(repo, _head(repo), tip)
    wt.remove_agent_repository(path)
    assert not marker.exists()
    assert tip and git(repo, "rev-parse", "main").strip() != tip and "+changed" in diff
    assert not (path / ".git").exists()


# ---------------------------------------------------------------- clean-up

def test_removing_the_folder_follows_no_symlink_and_beats_chmod(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    (path / "link").symlink_to(outside)
    (path / "locked" / "deep").mkdir(parents=True)
    (path / "locked" / "deep" / "f").write_text("x")
    (path / "locked" / "deep").chmod(0o500)
    (path / "locked").chmod(0o000)
    (path / ".git").rename(path / "agent-git")
    (path / ".git").symlink_to(outside)  # the agent replaced its .git with a symlink
    wt.remove_agent_repository(path)
    assert (outside / "precious.txt").read_text() == "keep me\n"
    wt.remove_worktree(repo, path, branch, delete_branch=True)
    assert not os.path.lexists(path) and (outside / "precious.txt").read_text() == "keep me\n"
    assert branch not in git(repo, "branch", "--list")


# ---------------------------------------------------------------- accept

def _episode_with(repo: Path, edit) -> tuple[str, str]:
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), "ep1", base)
    edit(path)
    return base, _commit(repo, path, branch)


def test_accept_refuses_to_write_through_a_symlinked_folder(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "data").symlink_to(outside)  # untracked, the user's own
    base, tip = _episode_with(repo, lambda p: ((p / "data").mkdir(), (p / "data" / "x.py").write_text("x\n")))
    before = capture(repo)
    with pytest.raises(wt.ApplyRefused, match="data is a symbolic link in your working tree"):
        wt.apply_to_user_tree(Repository.at(repo), base, tip)
    assert list(outside.iterdir()) == []
    assert_intact(repo, before)


def test_accept_writes_symlinks_as_links_and_modes_and_says_when_git_ignores(repo, tmp_path):
    with open(repo / ".gitignore", "a") as fh:
        fh.write("tool.sh\n")  # the user's uncommitted rule: the episode (base .gitignore) records tool.sh
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours\n")
    os.remove(repo / "calc.py")
    (repo / "calc.py").symlink_to(victim)  # the user's tree: calc.py is a symlink to outside now

    def edit(p):
        (p / "new-link").symlink_to("/etc/hostname")
        (p / "tool.sh").write_text("#!/bin/sh\n")
        (p / "tool.sh").chmod(0o755)
        (p / "debug.log").write_text("x\n")  # gitignored in the base: not part of the change
        (p / "build" / "keep.txt").write_text("new\n")
    base, tip = _episode_with(repo, edit)
    notes = []
    applied = wt.apply_to_user_tree(Repository.at(repo), base, tip, on_note=notes.append)
    assert applied == ["build/keep.txt", "new-link", "tool.sh"]
    assert os.readlink(repo / "new-link") == "/etc/hostname" and os.access(repo / "tool.sh", os.X_OK)
    assert notes == ["tool.sh is ignored by git in your repository (.gitignore): `git status` will not show it"]
    assert victim.read_text() == "not yours\n"

    # the agent deletes calc.py; the user's calc.py is a symlink: not the same file, so a conflict, nothing written
    base, tip = _episode_with_new_id(repo, "ep2", lambda p: (p / "calc.py").unlink())
    with pytest.raises(wt.MergeConflict, match="calc.py"):
        wt.apply_to_user_tree(Repository.at(repo), base, tip)
    assert victim.read_text() == "not yours\n" and (repo / "calc.py").is_symlink()


def _episode_with_new_id(repo: Path, eid: str, edit) -> tuple[str, str]:
    base = _head(repo)
    path, branch = wt.create_worktree(Repository.at(repo), eid, base)
    edit(path)
    return base, wt.commit_all(Repository.at(repo), path, base=base, branch=branch, message="m")


def test_accept_refuses_hidden_paths_and_submodules_of_old_branches(repo):
    """A kept branch from before this check (or made by hand) that touches a hidden path is refused."""
    base = _head(repo)
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=b"API_KEY=x\n",
                          capture_output=True, check=True).stdout.decode().strip()
    index = repo / ".git" / "scratch-index"
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", base, env=env)
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},.env", env=env)
    tree = git(repo, "write-tree", env=env).strip()
    index.unlink()
    tip = git(repo, "commit-tree", tree, "-p", base, "-m", "old").strip()
    before = capture(repo)
    with pytest.raises(wt.ApplyRefused, match=r"\.env is hidden by \.learnagentignore"):
        wt.apply_to_user_tree(Repository.at(repo), base, tip)
    assert_intact(repo, before)


def test_a_users_linked_worktree_obeys_the_main_trees_uncommitted_rules(git_repo, tmp_path):
    """The user works in a `git worktree add` checkout and has just added `private/` to the MAIN tree's
    `.learnagentignore` (uncommitted): the Repository of the worktree names its main tree, so the
    checkout, the recorded result and accept all obey that rule, with nothing looked up again."""
    (git_repo / "private").mkdir()
    (git_repo / "private" / "plan.py").write_text("PLAN = 'secret'\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "private plan")
    linked = tmp_path / "side"
    git(git_repo, "worktree", "add", "-q", "-b", "side", str(linked))
    (git_repo / ".learnagentignore").write_text("private/\n")  # in the main tree, not committed
    repo = Repository.at(linked)
    base = _head(linked)
    path, branch = wt.create_worktree(repo, "ep1", base)
    assert (path / "calc.py").is_file() and not (path / "private").exists()
    (path / "private").mkdir()
    (path / "private" / "plan.py").write_text("PLAN = 'leaked'\n")
    with pytest.raises(wt.UnsafeChange, match="touches private/plan.py, which .learnagentignore hides"):
        wt.commit_all(repo, path, base=base, branch=branch, message="m")
    # an old branch (or one made by hand) that touches the hidden file is refused on accept
    (linked / "private" / "plan.py").write_text("PLAN = 'changed'\n")
    git(linked, "commit", "-q", "-am", "change the plan")
    tip = _head(linked)
    git(linked, "reset", "-q", "--hard", base)
    with pytest.raises(wt.ApplyRefused, match="private/plan.py is hidden by .learnagentignore"):
        wt.apply_to_user_tree(repo, base, tip)
    assert (linked / "private" / "plan.py").read_text() == "PLAN = 'secret'\n"


# ---------------------------------------------------------------- repo map cache

def test_repo_map_cache_is_shared_between_episode_folders(repo, tmp_path):
    from learnagent.agent.repomap import RepoMap

    first, _ = wt.create_worktree(Repository.at(repo), "ep1", _head(repo))
    RepoMap(first, shared_with=Repository.at(repo), cache_dir=tmp_path / "cache").tags()
    second, _ = wt.create_worktree(Repository.at(repo), "ep2", _head(repo))
    rmap = RepoMap(second, shared_with=Repository.at(repo), cache_dir=tmp_path / "cache")
    rmap.tags()
    assert rmap.stats.parsed == 0 and rmap.stats.cache_hits == rmap.stats.files > 0
