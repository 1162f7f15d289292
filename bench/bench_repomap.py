"""Benchmark: learnagent's repo map vs Aider's on the same files, cold and cached; and how
relevant learnagent's map is to real tasks (recall@map, bench/repomap_relevance.py).

    python bench/bench_repomap.py [--corpus transformers,rxjs] [--tokens 1024] [--parts timing,relevance]

Corpora (offline): the `transformers` package source installed in our venv, and `rxjs` (TS
sources + compiled JS) from `npm pack` when npm can reach its registry. Each is copied into a
git repository under bench/.cache/corpora; our file list (`list_source_files`) is handed to both
tools so they map exactly the same files. Every measurement runs in a fresh process:
- cold: the tool's tag cache deleted first;
- warm: the cache left from the cold run (median of 3);
- one changed: one file rewritten, then a run (only that file should be re-parsed).
Aider runs from bench/.venv-aider (see aider_repomap_driver.py); results go to
docs/benchmarks/repomap.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
AIDER_PY = BENCH / ".venv-aider" / "bin" / "python"
RESULTS = BENCH.parent / "docs" / "benchmarks" / "repomap.md"


def git_repo_from(src: Path, dest: Path) -> Path:
    if (dest / ".git").exists():
        return dest
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    return dest


def corpus_transformers() -> Path:
    import transformers

    return git_repo_from(Path(transformers.__file__).parent, CACHE / "corpora" / "transformers")


def corpus_rxjs() -> Path:
    dest = CACHE / "corpora" / "rxjs"
    if (dest / ".git").exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "rxjs@7.8.1", "--silent"], cwd=tmp, check=True,
                       capture_output=True, timeout=120)
        with tarfile.open(next(Path(tmp).glob("*.tgz"))) as tar:
            tar.extractall(tmp, filter="data")
        return git_repo_from(Path(tmp) / "package", dest)


CORPORA = {"transformers": corpus_transformers, "rxjs": corpus_rxjs}

OURS = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from learnagent.agent.repomap import RepoMap
imported = time.perf_counter()
rm = RepoMap(Path(sys.argv[1]), cache_dir=Path(sys.argv[2]))
text = rm.render(int(sys.argv[3]))
done = time.perf_counter()
s = rm.stats
print(json.dumps({"seconds": done - imported, "import_seconds": imported - started,
                  "tokens": len(text) // 4, "chars": len(text), "files": s.files,
                  "parsed": s.parsed, "cache_hits": s.cache_hits, "skipped": s.skipped,
                  "definitions": s.definitions, "tags_seconds": s.seconds}))
"""


def run_json(cmd: list[str]) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True",
               AIDER_ANALYTICS="false")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def measure(name: str, cmd: list[str], clear_cache, touch) -> dict:
    clear_cache()
    cold = run_json(cmd)
    warm = [run_json(cmd) for _ in range(3)]
    touch()
    changed = run_json(cmd)
    print(f"  {name}: cold {cold['seconds']:.1f}s, warm {[round(w['seconds'], 2) for w in warm]},"
          f" one changed {changed['seconds']:.2f}s", flush=True)
    return {"cold": cold, "warm": warm[0], "warm_median": statistics.median(w["seconds"] for w in warm),
            "changed": changed}


def bench_corpus(name: str, root: Path, tokens: int, tools: set[str], results: dict) -> dict:
    from learnagent.agent.repomap_tags import list_source_files

    files = list_source_files(root)
    files_list = CACHE / f"{name}.files"
    files_list.write_text("".join(f + "\n" for f in files))
    victim = root / next(f for f in files if f.endswith((".py", ".ts")))
    original = victim.read_text()

    def touch():
        comment = "// touched" if victim.suffix == ".ts" else "# touched"
        victim.write_text(f"{original}\n{comment}\n")

    ours_cache = CACHE / "ours-cache" / name
    print(f"{name}: {len(files)} files", flush=True)
    results["files"] = len(files)
    try:
        if "ours" in tools:
            results["ours"] = measure(
                "learnagent", [sys.executable, "-c", OURS, str(root), str(ours_cache), str(tokens)],
                lambda: shutil.rmtree(ours_cache, ignore_errors=True), touch)
    finally:
        victim.write_text(original)
    if "aider" not in tools:
        pass
    elif AIDER_PY.exists():
        results.pop("aider_error", None)
        aider_cache = [root / ".aider.tags.cache.v4", root / ".aider.tags.cache.v3"]
        try:
            results["aider"] = measure(
                "aider", [str(AIDER_PY), str(BENCH / "aider_repomap_driver.py"), str(root),
                          str(files_list), str(tokens)],
                lambda: [shutil.rmtree(p, ignore_errors=True) for p in aider_cache], touch)
        except RuntimeError as err:
            results["aider_error"] = str(err)
        finally:
            victim.write_text(original)
    else:
        results["aider_error"] = f"{AIDER_PY} not found: python3 -m venv bench/.venv-aider && " \
                                 "bench/.venv-aider/bin/pip install aider-chat"
    return results


def version(py: str, pkg: str) -> str:
    code = f"import importlib.metadata as m; print(m.version('{pkg}'))"
    out = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def relevance_section(rel: dict | None, tokens: int) -> str:
    if not rel:
        return "Relevance: not measured yet (`--parts relevance`).\n"
    rows = []
    for name, r in rel.items():
        if name == "cost":
            continue
        if "error" in r:
            rows.append(f"| {name} | — | {r['error']} |  |  |  |  |")
            continue
        s = r["summary"]
        if not s.get("pairs"):
            continue
        t, c = s["task"], s["control"]
        rows.append(f"| {name} | {s['pairs']} | {t['recall']:.3f} ({c['recall']:.3f}) | {t['top3']:.3f} ({c['top3']:.3f})"
                    f" | {t['hit']:.3f} | {t['shown']:.1f} | {r.get('files') or 'per commit'} |")
    return f"""
## Relevance: recall@map on real commits

Pairs (task = a commit's subject, files = the source files it changed, 1-3 of them) from real
histories, scored by `bench/repomap_relevance.py` (how the pairs were chosen: its docstring).
`learnagent`: this repository's history, each map built on the commit's parent tree. `click`,
`rich`: 150 pairs each from pallets/click and Textualize/rich (bench/data/repomap_pairs.jsonl),
mapped on the package source installed in the venv (a nearby release, not each parent tree).
Budget {tokens} tokens. recall@map: share of the changed files the map names; top-3: share among the
map's first three files; hit: at least one named. In brackets: the same map built without the
task (the control).

| corpus | pairs | recall@map (no task) | recall top-3 (no task) | hit | files named | files in tree |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{_cost_line(rel.get("cost"))}"""


def _cost_line(cost: dict | None) -> str:
    if not cost:
        return ""
    return (f"\nCost of the sub-word matching on {cost['corpus']} ({cost['files']} files, {cost['names']} defined "
            f"names): the index of names takes {cost['index_seconds']:.2f} s once per map build; matching one "
            f"task {cost['match_ms']:.1f} ms (load average {cost.get('load', '?')} on {os.cpu_count()} cores).\n")


def write_report(all_results: dict, tokens: int) -> None:
    rows = []
    for name, r in all_results.items():
        if name == "relevance":
            continue
        for tool in ("ours", "aider"):
            if tool not in r:
                continue
            t = r[tool]
            extra = (f"parsed {t['cold']['parsed']}, skipped {t['cold']['skipped']};"
                     f" after 1 change: parsed {t['changed']['parsed']}") if tool == "ours" else ""
            rows.append(f"| {name} | {'learnagent' if tool == 'ours' else 'aider'} | {r['files']} |"
                        f" {t['cold']['seconds']:.1f} | {t['warm_median']:.2f} |"
                        f" {t['changed']['seconds']:.2f} | {t['cold']['tokens']} |"
                        f" {t['cold']['import_seconds']:.2f} | {extra} |")
        if "aider_error" in r:
            rows.append(f"| {name} | aider | {r['files']} | — | — | — | — | — | failed: "
                        f"{r['aider_error'][:300].replace('|', '/')} |")
    old = RESULTS.read_text() if RESULTS.exists() else ""
    cut = min([i for i in (old.find("\n## Relevance"), old.find("\nRaw numbers"), old.find("\n## Notes")) if i >= 0],
              default=len(old))
    timing = _timing_text(rows, tokens) if rows else old[:cut].rstrip("\n") + "\n"
    if all_results.get("relevance"):
        relevance = relevance_section(all_results["relevance"], tokens)
    elif "\n## Relevance" in old:  # measured earlier: kept as it was
        start = old.index("\n## Relevance")
        end = min([i for i in (old.find("\nRaw numbers", start), old.find("\n## Notes", start)) if i >= 0],
                  default=len(old))
        relevance = old[start:end].rstrip("\n") + "\n"
    else:
        relevance = relevance_section(None, tokens)
    text = f"{timing}{relevance}\nRaw numbers: bench/.cache/repomap_results.json (git-ignored).\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # A hand-written "## Notes" section (analysis of the numbers) survives a re-run.
    if "\n## Notes" in old:
        text += old[old.index("\n## Notes"):]
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


def _timing_text(rows: list[str], tokens: int) -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    aider_versions = (f"aider-chat {version(str(AIDER_PY), 'aider-chat')}, tree-sitter "
                      f"{version(str(AIDER_PY), 'tree-sitter')}" if AIDER_PY.exists() else "n/a")
    return f"""# Repo map benchmark: learnagent vs Aider

Generated by `python bench/bench_repomap.py` on {datetime.date.today().isoformat()}.
Machine: {os.cpu_count()} CPU cores ({cpu}), no GPU, Python {platform.python_version()},
shared with other jobs (load average {load:.1f} at the end; timings are indicative, ±20 %).
Tools: learnagent (tree-sitter {version(sys.executable, 'tree-sitter')},
tree-sitter-language-pack {version(sys.executable, 'tree-sitter-language-pack')});
{aider_versions} in its own venv (bench/.venv-aider), driven by bench/aider_repomap_driver.py
with stub `io`/`main_model` objects (len/4 token counter, no network).

Both tools get the same file list (learnagent's `list_source_files`) and a budget of
{tokens} tokens (len/4). Each run is a fresh process; seconds exclude interpreter start and
imports (import time in its own column).
- cold: tag cache deleted first; warm: cache present (median of 3 runs);
- one changed: one source file rewritten, then a run.

| corpus | tool | files | cold s | warm s | one changed s | map tokens | import s | notes |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="transformers,rxjs")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--tools", default="ours,aider",
                        help="which tools to (re)run; others keep their last saved results")
    parser.add_argument("--parts", default="timing,relevance",
                        help="timing (vs aider), relevance (recall@map on real commits), or both")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    saved = CACHE / "repomap_results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    parts = set(args.parts.split(","))
    if "relevance" in parts:
        import repomap_relevance

        results["relevance"] = repomap_relevance.run(args.tokens)
        for name, r in results["relevance"].items():
            print(f"relevance {name}: {json.dumps(r.get('summary', r))}", flush=True)
        saved.write_text(json.dumps(results, indent=2))
    for name in (args.corpus.split(",") if "timing" in parts else []):
        try:
            root = CORPORA[name]()
        except (subprocess.SubprocessError, OSError, StopIteration) as err:
            print(f"{name}: corpus unavailable ({err}); skipped")
            continue
        results[name] = bench_corpus(name, root, args.tokens, set(args.tools.split(",")),
                                     results.get(name, {}))
        saved.write_text(json.dumps(results, indent=2))
    write_report(results, args.tokens)


if __name__ == "__main__":
    main()
