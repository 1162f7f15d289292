"""Installing, chaining and removing the outcome hooks, with real git."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from outcome_helpers import episode, events, git, propose

from learnagent.core.githooks import HOOK_NAMES, PREV_SUFFIX, hooks_dir, hooks_status, install_hooks, uninstall_hooks
from learnagent.store.episodes import Store

USER_HOOK = "#!/bin/sh\necho \"user hook ran $*\" >> \"$(git rev-parse --show-toplevel)/../user-hook.log\"\nexit 3\n"
SUB = {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"}


def snapshot(folder: Path) -> dict:
    """Every entry of a folder: bytes (or link target) and mode bits."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = os.lstat(p)
        body = ("link", os.readlink(p)) if p.is_symlink() else ("file", p.read_bytes())
        out[p.name] = (body, stat.S_IMODE(st.st_mode))
    return out


def test_install_is_idempotent_and_status_reports(git_repo):
    done = install_hooks(git_repo)
    assert done == [f"{n}: installed" for n in HOOK_NAMES]
    folder = git_repo / ".git" / "hooks"
    before = snapshot(folder)
    assert install_hooks(git_repo) == [f"{n}: already installed" for n in HOOK_NAMES]
    assert snapshot(folder) == before
    assert all(os.access(folder / n, os.X_OK) for n in HOOK_NAMES)
    assert all(s["installed"] and not s["chained"] for s in hooks_status(git_repo))
    text = (folder / "post-commit").read_text()
    assert sys.executable in text and "-m learnagent.services.settle_outcomes post-commit" in text


# What `learnagent hooks install` wrote before the hook entry moved to services/ (core/githooks.py at
# 40adc3d, hook_script("post-commit")): users' repositories keep this file until they reinstall.
OLD_POST_COMMIT = """#!/bin/sh
# learnagent-hook v1: records what became of learnagent's proposed edits.
# Installed by `learnagent hooks install`; `learnagent hooks uninstall` removes it and puts the
# previous hook back (it is kept next to this one as post-commit.learnagent-prev and runs first).
prev="$(dirname "$0")/post-commit.learnagent-prev"
status=0
if [ -x "$prev" ]; then "$prev" "$@"; status=$?; fi
if [ -z "$LEARNAGENT_HOOKS_DISABLE" ]; then
  if [ -x PYTHON ]; then
    PYTHON -m learnagent.core.githooks post-commit "$@" < /dev/null 2>/dev/null || true
  elif command -v learnagent >/dev/null 2>&1; then
    learnagent hook post-commit "$@" < /dev/null 2>/dev/null || true
  fi
fi
exit $status
"""


def test_a_hook_installed_by_an_earlier_version_still_settles_outcomes(git_repo, learnagent_home):
    folder = git_repo / ".git" / "hooks"
    folder.mkdir(exist_ok=True)
    (folder / "post-commit").write_text(OLD_POST_COMMIT.replace("PYTHON", sys.executable))
    os.chmod(folder / "post-commit", 0o755)
    with Store() as store:
        eid, _ = propose(store, git_repo, SUB)
        git(git_repo, "commit", "-qam", "add sub")
        assert episode(store, eid)["outcome"] == "accepted"
    assert not (learnagent_home / "hooks.log").exists()
    # the old entry point hands over to the new one (its usage line), exit 0
    proc = subprocess.run([sys.executable, "-m", "learnagent.core.githooks"], cwd=git_repo,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m learnagent.services.settle_outcomes")
    # and reinstalling replaces it with the current entry, keeping it ours (not chained as a user hook)
    assert install_hooks(git_repo)[0] == "post-commit: updated"
    assert "-m learnagent.services.settle_outcomes post-commit" in (folder / "post-commit").read_text()


def test_existing_hook_still_runs_keeps_its_exit_code_and_is_restored_exactly(git_repo, learnagent_home):
    folder = git_repo / ".git" / "hooks"
    for name in ("post-commit", "post-rewrite"):
        (folder / name).write_text(USER_HOOK)
        os.chmod(folder / name, 0o750)  # unusual mode bits must come back too
    os.symlink("post-commit", folder / "post-merge")  # and a symlinked hook stays a symlink
    before = snapshot(folder)

    done = install_hooks(git_repo)
    assert "post-commit: installed (chained to the existing hook, kept as post-commit.learnagent-prev)" in done
    assert (folder / ("post-commit" + PREV_SUFFIX)).read_text() == USER_HOOK

    with Store() as store:
        eid, _ = propose(store, git_repo, SUB)
        git(git_repo, "commit", "-qam", "add sub")
        assert "user hook ran" in (git_repo.parent / "user-hook.log").read_text()
        assert episode(store, eid)["outcome"] == "accepted"  # ours ran as well
        # the wrapper exits with the user's hook's exit code
        proc = subprocess.run([str(folder / "post-commit")], cwd=git_repo, capture_output=True, text=True)
        assert proc.returncode == 3
        # post-rewrite: the user's hook and ours both get git's old->new list on stdin
        old = git(git_repo, "rev-parse", "HEAD").strip()
        git(git_repo, "commit", "-q", "--amend", "-m", "add sub!")
        new = git(git_repo, "rev-parse", "HEAD").strip()
        assert "user hook ran amend" in (git_repo.parent / "user-hook.log").read_text()
        assert [e["commit_sha"] for e in events(store, eid, "rewritten")] == [old]
        assert [e["commit_sha"] for e in events(store, eid, "match")] == [new]

    done = uninstall_hooks(git_repo)
    assert "post-commit: removed; previous hook restored" in done
    assert snapshot(folder) == before


def test_non_executable_hook_stays_ignored_like_git_does(git_repo):
    folder = git_repo / ".git" / "hooks"
    (folder / "post-commit").write_text(USER_HOOK)
    os.chmod(folder / "post-commit", 0o644)
    before = snapshot(folder)
    install_hooks(git_repo)
    (git_repo / "x.txt").write_text("x\n")
    git(git_repo, "add", "x.txt")
    git(git_repo, "commit", "-qm", "x")
    assert not (git_repo.parent / "user-hook.log").exists()
    uninstall_hooks(git_repo)
    assert snapshot(folder) == before


def test_local_core_hooks_path_is_honoured_and_its_folder_removed_again(git_repo, learnagent_home):
    git(git_repo, "config", "core.hooksPath", "myhooks")
    (git_repo / ".git" / "info" / "exclude").write_text("myhooks/\n")  # not part of the agent's diff
    assert hooks_dir(git_repo) == (git_repo / "myhooks").resolve()
    done = install_hooks(git_repo)
    assert done[0].startswith("created ") and (git_repo / "myhooks" / "post-commit").exists()
    assert not (git_repo / ".git" / "hooks" / "post-commit").exists()
    with Store() as store:
        eid, _ = propose(store, git_repo, SUB)
        git(git_repo, "commit", "-qam", "add sub")
        assert episode(store, eid)["outcome"] == "accepted"
    uninstall_hooks(git_repo)
    assert not (git_repo / "myhooks").exists()


def test_global_core_hooks_path_with_an_existing_hook(git_repo, tmp_path, monkeypatch, learnagent_home):
    shared = tmp_path / "global-hooks"
    shared.mkdir()
    (shared / "post-commit").write_text(USER_HOOK)
    os.chmod(shared / "post-commit", 0o755)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f"[core]\n\thooksPath = {shared}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    before = snapshot(shared)
    assert hooks_dir(git_repo) == shared
    install_hooks(git_repo)
    with Store() as store:
        eid, _ = propose(store, git_repo, SUB)
        git(git_repo, "commit", "-qam", "add sub")
        assert episode(store, eid)["outcome"] == "accepted"
    assert "user hook ran" in (git_repo.parent / "user-hook.log").read_text()
    uninstall_hooks(git_repo)
    assert snapshot(shared) == before


def test_a_broken_learnagent_never_breaks_a_commit(git_repo, tmp_path, monkeypatch, learnagent_home):
    install_hooks(git_repo)
    with Store() as store:
        propose(store, git_repo, SUB)  # an open episode, so the hook has work to do
    # a corrupt database: the hook fails inside, logs it, and the commit goes through
    db = learnagent_home / "learnagent.db"
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(b"this is not a sqlite database" * 100)
    git(git_repo, "commit", "-qam", "still commits")
    assert git(git_repo, "log", "-1", "--format=%s").strip() == "still commits"
    log = (learnagent_home / "hooks.log").read_text()
    assert "post-commit" in log and "StoreError" in log
    # an unusable home (a path below a regular file, unwritable even for root): still commits
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LEARNAGENT_HOME", str(blocker / "home"))
    (git_repo / "y.txt").write_text("y\n")
    git(git_repo, "add", "y.txt")
    git(git_repo, "commit", "-qm", "commits too")
    assert git(git_repo, "log", "-1", "--format=%s").strip() == "commits too"


def test_hook_imports_no_heavy_libraries(git_repo, learnagent_home):
    install_hooks(git_repo)
    with Store() as store:
        propose(store, git_repo, SUB)
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "work", env={"LEARNAGENT_HOOKS_DISABLE": "1"})
    code = ("import sys; from learnagent.services import settle_outcomes; settle_outcomes.main(['post-commit']);"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'typer', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=git_repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "accepted" in out.stdout  # it did its work (the commit was made with hooks disabled)


def test_the_agents_own_commits_on_its_branch_are_not_verdicts(git_repo, learnagent_home):
    install_hooks(git_repo)
    git(git_repo, "checkout", "-qb", "learnagent/abc")
    with Store() as store:
        eid, _ = propose(store, git_repo, SUB, applied=True)
        git(git_repo, "commit", "-qam", "agent commit")
        assert episode(store, eid)["outcome"] == "pending"
        assert events(store, eid) == []


def test_episode_proposed_in_a_linked_worktree_is_settled_by_a_commit_there(git_repo, tmp_path):
    """A user's own `git worktree add` checkout is the same repository: `do` there files the
    episode under the main tree's key, and the commit made there settles it."""
    from learnagent.core.repository import Repository

    linked = tmp_path / "linked"
    git(git_repo, "worktree", "add", "-q", "-b", "side", str(linked))
    assert Repository.at(linked).key == Repository.at(git_repo).key
    install_hooks(git_repo)
    with Store() as store:
        eid, _ = propose(store, linked, SUB)
        row = store.conn.execute("SELECT path FROM repos").fetchall()
        assert [r[0] for r in row] == [str(git_repo.resolve())]
        git(linked, "commit", "-qam", "add sub")
        assert episode(store, eid)["outcome"] == "accepted"
