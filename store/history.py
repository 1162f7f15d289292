"""`learnagent history import`: past commits become episodes to learn the repository's ways from.

Each non-merge commit becomes one episode: source 'history', task = the commit message,
base_commit = its parent, final_diff = its diff, outcome 'accepted', and meta["before"] = the
touched files as they were before (size-capped), so that training can show the model the
code it had to change. Left out: merge and root commits, vendored/generated/binary files
(node_modules, vendor, dist, *.min.js, lock files, files git treats as binary, files marked
linguist-generated/-vendored in .gitattributes), and commits whose remaining diff is huge.
Re-running skips commits already imported (the `imported_commits` table, keyed by sha).
Every text goes through the Store's scrubber (secrets never reach the database).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.ignore import IgnoreRules
from learnagent.core.repository import Repository
from learnagent.store import gitutil
from learnagent.store.episodes import history_episode_id

MAX_DIFF_LINES = 1500  # changed lines (after filtering) above which a commit is skipped
MAX_BEFORE_FILE = 64_000  # characters of one file's previous content kept in meta["before"]
MAX_BEFORE_TOTAL = 256_000

SKIP_DIRS = {"node_modules", "vendor", "vendors", "third_party", "dist", "build", "__pycache__", ".venv",
             "venv", "bower_components", "site-packages", "target", "out", ".next"}
SKIP_GLOBS = ["*.min.js", "*.min.css", "*.map", "*.lock", "package-lock.json", "npm-shrinkwrap.json",
              "pnpm-lock.yaml", "yarn.lock", "go.sum", "Cargo.lock", "poetry.lock", "Pipfile.lock",
              "composer.lock", "Gemfile.lock", "uv.lock", "*.pb.go", "*_pb2.py", "*.generated.*", "*.svg",
              "*.ipynb"]


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # episode ids
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> commits
    commits: int = 0  # non-merge commits in the range (since..HEAD)
    capped: bool = False  # stopped at max_commits with commits left unexamined

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def skipped_path(path: str) -> bool:
    parts = path.split("/")
    if any(p in SKIP_DIRS for p in parts[:-1]):
        return True
    return any(fnmatch.fnmatch(parts[-1], g) for g in SKIP_GLOBS)


def _marked_generated(root: Path, paths: list[str]) -> set[str]:
    """Paths .gitattributes marks linguist-generated / linguist-vendored / binary."""
    if not paths:
        return set()
    out = gitutil.git(root, "check-attr", "-z", "--stdin", "linguist-generated", "linguist-vendored", "binary",
                      input="\0".join(paths).encode() + b"\0", check=False)
    fields = out.split("\0")
    marked = set()
    for i in range(0, len(fields) - 2, 3):
        path, _attr, value = fields[i:i + 3]
        if value in ("set", "true"):
            marked.add(path)
    return marked


def _changed_files(root: Path, parent: str, sha: str) -> list[tuple[str, int | None]]:
    """(path, changed lines) per file; None lines for binary files."""
    out = gitutil.git(root, "diff", "--numstat", "-z", "--no-renames", *gitutil.DIFF_FLAGS, parent, sha)
    files = []
    for rec in out.split("\0"):
        if not rec.strip():
            continue
        added, deleted, path = rec.split("\t", 2)
        files.append((path, None if added == "-" else int(added) + int(deleted)))
    return files


def import_history(store, repo: Repository, *, since: str | None = None, max_commits: int = 200,
                   max_diff_lines: int = MAX_DIFF_LINES, progress=None) -> ImportReport:
    """The commits of `repo`'s main tree as accepted episodes. `progress(examined, commits, chosen,
    written)` is called after each commit looked at (written 0) and after each one written."""
    root = repo.main_tree
    repo_id = store.ensure_repo(repo)
    report = ImportReport()
    args = ["rev-list", "--no-merges"] + ([f"--since={since}"] if since else []) + ["HEAD"]
    done = store.imported_commits(repo_id)
    ignore = IgnoreRules.for_repository(repo)  # .learnagentignore: never read secrets files into episodes
    shas = gitutil.git(root, *args).split()
    report.commits = len(shas)
    chosen: list[tuple[dict, str, str, list[str]]] = []  # (commit, parent, diff, paths), newest first
    looked_at = len(shas)  # unless stopped at max_commits
    for examined, sha in enumerate(shas):
        if progress is not None and examined:
            progress(examined, len(shas), len(chosen), 0)
        if len(chosen) >= max_commits:
            report.capped, looked_at = True, examined
            break
        if sha in done:
            report.skip("already imported")
            continue
        if store.is_forgotten_commit(repo_id, sha):
            report.skip("forgotten")
            continue
        info = gitutil.commit_info(root, sha)
        if not info["parents"]:
            report.skip("root commit")
            continue
        parent = info["parents"][0]
        files = _changed_files(root, parent, sha)
        marked = _marked_generated(root, [p for p, _ in files])
        keep = [(p, n) for p, n in files
                if n is not None and not skipped_path(p) and p not in marked and not ignore.is_ignored(p)]
        if not keep:
            report.skip("no source files")
            continue
        if sum(n for _, n in keep) > max_diff_lines:
            report.skip("diff too large")
            continue
        paths = [p for p, _ in keep]
        diff = gitutil.git(root, "diff", "--no-renames", *gitutil.DIFF_FLAGS, parent, sha, "--",
                           *[f":(literal){p}" for p in paths])
        if not diff.strip():
            report.skip("empty diff")
            continue
        chosen.append((info, parent, diff, paths))
    # written oldest first, so that commits made in the same second list (`log`: newest first by
    # time, then by the order written) child above parent, as `git log` shows them
    for written, (info, parent, diff, paths) in enumerate(reversed(chosen), 1):
        eid = _record(store, root, repo_id, info, parent, diff, paths)  # reads each file's old text: git per file
        if eid is None:
            report.skip("already imported")  # by another `history import` running at the same time
        else:
            report.imported.append(eid)
        if progress is not None:
            progress(looked_at, len(shas), len(chosen), written)
    report.imported.reverse()  # newest first, as examined
    return report


def _record(store, root: Path, repo_id: str, info: dict, parent: str, diff: str, paths: list[str]) -> str | None:
    """The commit as an episode; None when it is imported already (looked at again under the write
    lock: the `done` set was read before it, and another import may have recorded it since; a
    duplicate `imported_commits` key would fail the whole transaction on PostgreSQL)."""
    before, truncated, total = {}, [], 0
    for p in paths:
        text = gitutil.show_file(root, parent, p)
        if text is None:
            continue  # a new file: nothing before
        if len(text) > MAX_BEFORE_FILE or total + len(text) > MAX_BEFORE_TOTAL:
            truncated.append(p)
            continue
        before[p] = store.scrub(text)
        total += len(text)
    sha = info["sha"]
    meta = {"commit": sha, "author": store.scrub(info["author"]), "files": paths, "before": before,
            "before_skipped": truncated}
    subject = info["message"].splitlines()[0] if info["message"] else sha[:10]
    with store.transaction():
        if store.is_imported_commit(repo_id, sha):
            return None
        # ids sort like the history; unique per repository (a second clone gets its own), and a
        # clash with an unrelated id (same second, same 6 hex) takes a longer tail
        extra = 0
        eid = history_episode_id(repo_id, sha, info["authored_at"])
        while store.has_episode(eid) and extra < 34:
            extra += 2
            eid = history_episode_id(repo_id, sha, info["authored_at"], extra)
        store.create_episode(repo_id, info["message"] or subject, source="history", base_commit=parent, meta=meta,
                             episode_id=eid, started_at=info["authored_at"], author=info["author_email"] or None)
        store.finish_episode(eid, "finished", final_diff=diff, summary=subject)
        store.set_outcome(eid, "accepted", "history import")
        store.add_imported_commit(repo_id, sha, eid)
    return eid
