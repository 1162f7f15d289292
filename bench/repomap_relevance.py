"""Repo-map relevance: does the map for a task show the files the task's real commit changed?

Pairs (task = a commit's subject line, files = the source files it changed) come from real
commits of real repositories, all available offline:
- `learnagent`: this repository's own history. Each pair's map is built on the tree of the
  commit's parent (a clone under bench/.cache), so it is exactly what the agent would have seen.
- `click`, `rich`: the git history of pallets/click and Textualize/rich, extracted once into
  bench/data/repomap_pairs.jsonl (`--extract`, from a clone of each; no network at run time). The
  map is built on the package source installed in this venv (click 8.5.x, rich 15.x), a release
  close to those commits: a static check, since the tree is not each commit's parent.

Extraction rules (`extract_pairs`): newest non-merge commits first; the commit changes 1 to 3
`.py` files of the package that exist in the installed release; its subject has at least four
words and is not a release, merge or changelog note; repeated subjects are kept once.

recall@map = share of a pair's changed files that the rendered map (default budget 1024 tokens)
names; hit = at least one of them is named. The same pairs with no task (a map that ignores the
task) are the control.

    python bench/repomap_relevance.py --extract click=/path/to/click-clone rich=/path/to/rich-clone
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
PAIRS = BENCH / "data" / "repomap_pairs.jsonl"
PACKAGE_PREFIXES = {"click": ("src/click/", "click/"), "rich": ("rich/",)}
MAX_PAIRS = 150
MAX_FILES = 3
SKIP_SUBJECT = re.compile(r"^(release|bump|merge|changelog|update changelog|prepare|pre-commit|\[pre-commit)", re.I)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def installed_package(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).parent


def package_files(name: str) -> set[str]:
    folder = installed_package(name)
    return {str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def extract_pairs(name: str, clone: Path, limit: int = MAX_PAIRS) -> list[dict]:
    """(task, files) pairs from a clone of the package's repository (see the module docstring)."""
    present = package_files(name)
    pairs, seen = [], set()
    log = git(clone, "log", "--no-merges", "--format=%H%x09%s")
    for line in log.splitlines():
        sha, _, subject = line.partition("\t")
        subject = subject.strip()
        if len(subject.split()) < 4 or SKIP_SUBJECT.match(subject) or subject.lower() in seen:
            continue
        changed = git(clone, "diff-tree", "--no-commit-id", "-r", "--name-only", "--no-renames", sha).split()
        files = []
        for path in changed:
            for prefix in PACKAGE_PREFIXES[name]:
                if path.startswith(prefix) and path.endswith(".py") and path[len(prefix):] in present:
                    files.append(path[len(prefix):])
                    break
        if not 1 <= len(files) <= MAX_FILES:
            continue
        seen.add(subject.lower())
        pairs.append({"corpus": name, "sha": sha, "task": subject, "files": sorted(set(files))})
        if len(pairs) >= limit:
            break
    return pairs


def map_files(text: str) -> tuple[list[str], list[str]]:
    """(every file the map names, in rank order; the files it outlines with definitions)."""
    named = [line for line in text.splitlines() if line and line[0] not in "│⋮"]
    return [f.rstrip(":") for f in named], [f[:-1] for f in named if f.endswith(":")]


def _score(rm, task: str, expected: list[str], files: list[str], tokens: int) -> dict:
    from learnagent.agent.repomap import mentions_from_text

    mentioned, idents = mentions_from_text(task, files) if task else (set(), set())
    named, outlined = map_files(rm.render(tokens, mentioned, idents))
    share = lambda shown: sum(f in shown for f in expected) / len(expected)  # noqa: E731
    return {"recall": share(named), "outlined": share(outlined), "top3": share(named[:3]),
            "hit": any(f in named for f in expected), "shown": len(named), "outlined_files": len(outlined)}


METRICS = ("recall", "outlined", "top3", "hit", "shown", "outlined_files")


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"pairs": 0}
    out = {"pairs": len(rows)}
    for key in ("task", "control"):
        out[key] = {m: round(statistics.mean(r[key][m] for r in rows), 3) for m in METRICS}
    return out


def score_installed(name: str, pairs: list[dict], tokens: int) -> dict:
    from learnagent.agent.repomap import RepoMap
    from learnagent.agent.repomap_tags import list_source_files

    from bench_repomap import git_repo_from

    root = git_repo_from(installed_package(name), CACHE / "corpora" / name)
    files = list_source_files(root)
    rm = RepoMap(root, cache_dir=CACHE / "relevance-cache" / name)
    rows = []
    for p in pairs:
        expected = [f for f in p["files"] if f in files]
        if not expected:
            continue
        rows.append({"sha": p["sha"], "subject": p["task"], "expected": expected,
                     "task": _score(rm, p["task"], expected, files, tokens),
                     "control": _score(rm, "", expected, files, tokens)})
    return {"files": len(files), "rows": rows, "summary": _summary(rows)}


def learnagent_pairs(clone: Path) -> list[dict]:
    pairs = []
    for line in git(clone, "log", "--no-merges", "--format=%H%x09%P%x09%s").splitlines():
        sha, parents, subject = line.split("\t", 2)
        if not parents or len(subject.split()) < 4:
            continue
        changed = set(git(clone, "diff", "--name-only", "--no-renames", parents.split()[0], sha).split())
        pairs.append({"sha": sha, "parent": parents.split()[0], "task": subject, "changed": sorted(changed)})
    return pairs


def score_own_history(tokens: int) -> dict:
    """This repository's commits, each mapped on its parent's tree (a clone, checked out in turn)."""
    from learnagent.agent.repomap import RepoMap
    from learnagent.agent.repomap_tags import list_source_files
    from learnagent.core.repository import Repository

    clone = CACHE / "corpora" / "learnagent-history"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    rows = []
    for p in learnagent_pairs(clone):
        git(clone, "checkout", "-q", "--detach", "-f", p["parent"])
        git(clone, "clean", "-qfdx")
        files = list_source_files(clone)
        expected = [f for f in p["changed"] if f in files]
        if not 1 <= len(expected) <= MAX_FILES:
            continue
        rm = RepoMap(clone, cache_dir=CACHE / "relevance-cache" / "learnagent", shared_with=Repository.at(clone))
        rows.append({"sha": p["sha"], "subject": p["task"], "expected": expected,
                     "task": _score(rm, p["task"], expected, files, tokens),
                     "control": _score(rm, "", expected, files, tokens)})
    return {"files": None, "rows": rows, "summary": _summary(rows)}


def matching_cost(tasks: list[str]) -> dict:
    """What sub-word matching costs on a large repository (the installed transformers source,
    bench_repomap's corpus): building the index of names once per map, and matching one task."""
    import time

    from learnagent.agent.repomap import RepoMap, _Index
    from learnagent.agent.repomap_match import TermIndex

    from bench_repomap import corpus_transformers

    root = corpus_transformers()
    tags = RepoMap(root, cache_dir=CACHE / "ours-cache" / "transformers").tags()
    index = _Index.build(tags)
    started = time.perf_counter()
    terms = TermIndex(index.defines)
    built = time.perf_counter() - started
    started = time.perf_counter()
    for task in tasks:
        terms.match(task.split(), tags)
    per_task = (time.perf_counter() - started) / max(len(tasks), 1)
    import os

    return {"corpus": "transformers", "files": len(tags), "names": len(terms.stems),
            "index_seconds": round(built, 3), "match_ms": round(per_task * 1000, 1),
            "load": round(os.getloadavg()[0], 1)}


def run(tokens: int = 1024) -> dict:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    results = {}
    for name in ("click", "rich"):
        mine = [p for p in pairs if p["corpus"] == name]
        try:
            results[name] = score_installed(name, mine, tokens)
        except ImportError as err:
            results[name] = {"error": f"{name} is not installed here ({err})"}
    results["learnagent"] = score_own_history(tokens)
    results["cost"] = matching_cost([p["task"] for p in pairs])
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", nargs="*", default=[], metavar="NAME=CLONE",
                    help="rewrite bench/data/repomap_pairs.jsonl from clones of the packages' repositories")
    ap.add_argument("--tokens", type=int, default=1024)
    a = ap.parse_args()
    if a.extract:
        out = []
        for item in a.extract:
            name, _, clone = item.partition("=")
            out += extract_pairs(name, Path(clone))
            print(f"{name}: {sum(p['corpus'] == name for p in out)} pairs")
        PAIRS.parent.mkdir(parents=True, exist_ok=True)
        PAIRS.write_text("".join(json.dumps(p) + "\n" for p in out))
        return
    results = run(a.tokens)
    for name, r in results.items():
        print(name, json.dumps(r.get("summary", r)))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
