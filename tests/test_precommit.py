"""The `pre-commit` framework integration, with the real pre-commit tool and real commits, and
`learnagent review` with the tiny random model and a LoRA adapter made here."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from outcome_helpers import episode, git, propose, venv_path_env

from learnagent.core.githooks import install_hooks, uninstall_hooks
from learnagent.core.repository import Repository
from learnagent.learning.convention_review import review, staged_blocks
from learnagent.store.episodes import Store

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / ".pre-commit-hooks.yaml"
HOOK_SCRIPT = ROOT / "scripts" / "pre-commit-hook"
SUB = {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"}


def pre_commit(repo, *args, check=True):
    env = {**os.environ, **venv_path_env(), "PRE_COMMIT_HOME": str(Path(repo).parent / "pc-home")}
    out = subprocess.run(["pre-commit", *args], cwd=repo, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"pre-commit {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out


def hook_repo(where: Path) -> tuple[str, str]:
    """This repository's hooks as pre-commit sees a remote one: a git repository holding the manifest
    and the script it names (copied from this checkout), cloned by pre-commit at a fixed rev."""
    repo = where / "hooks-repo"
    if not (repo / ".git").exists():
        (repo / "scripts").mkdir(parents=True)
        shutil.copy2(MANIFEST, repo / MANIFEST.name)
        shutil.copy2(HOOK_SCRIPT, repo / "scripts" / HOOK_SCRIPT.name)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "hooks", env={"LEARNAGENT_HOOKS_DISABLE": "1"})
    return str(repo), git(repo, "rev-parse", "HEAD").strip()


def hooks_config(where: Path, review=False, review_args=()) -> str:
    url, rev = hook_repo(where)
    hooks = [{"id": "learnagent-outcomes"}]
    if review:
        hooks.append({"id": "learnagent-review"} | ({"args": list(review_args)} if review_args else {}))
    return yaml.safe_dump({"repos": [{"repo": url, "rev": rev, "hooks": hooks}]}, sort_keys=False)


@pytest.fixture
def pc_repo(git_repo, monkeypatch):
    monkeypatch.setenv("PATH", venv_path_env()["PATH"])
    (git_repo / ".git" / "info" / "exclude").write_text(".learnagent/\n")
    return git_repo


def commit_config(repo, text):
    (repo / ".pre-commit-config.yaml").write_text(text)
    git(repo, "add", ".pre-commit-config.yaml")
    git(repo, "commit", "-qm", "pre-commit config", env={"LEARNAGENT_HOOKS_DISABLE": "1"})


def test_manifest_is_valid_and_declares_both_hooks():
    out = subprocess.run(["pre-commit", "validate-manifest", str(MANIFEST)], capture_output=True, text=True,
                         env={**os.environ, **venv_path_env()})
    assert out.returncode == 0, out.stdout + out.stderr
    hooks = {h["id"]: h for h in yaml.safe_load(MANIFEST.read_text())}
    assert hooks["learnagent-outcomes"]["stages"] == ["post-commit"]
    assert hooks["learnagent-outcomes"]["always_run"] is True and hooks["learnagent-outcomes"]["pass_filenames"] is False
    assert hooks["learnagent-review"]["stages"] == ["pre-commit"]
    # neither makes pre-commit build an environment: they run the installed learnagent
    assert {h["language"] for h in hooks.values()} == {"script"}
    assert all(h["entry"].startswith("scripts/pre-commit-hook ") for h in hooks.values())
    assert hooks["learnagent-outcomes"]["verbose"] is True  # its verdicts are shown, not hidden


def test_real_pre_commit_records_outcomes_without_building_an_environment(pc_repo):
    """The first commit through pre-commit costs a clone of the hooks repository, not an install:
    no virtualenv appears in pre-commit's cache, and the hook's verdict is printed."""
    commit_config(pc_repo, hooks_config(pc_repo.parent, review=True))
    pre_commit(pc_repo, "validate-config")
    pre_commit(pc_repo, "install", "--hook-type", "pre-commit", "--hook-type", "post-commit")
    with Store() as store:
        eid, _ = propose(store, pc_repo, SUB)
        out = subprocess.run(["git", "commit", "-am", "add sub"], cwd=pc_repo, capture_output=True, text=True,
                             env={**os.environ, "PRE_COMMIT_HOME": str(pc_repo.parent / "pc-home")})
        said = out.stdout + out.stderr
        assert out.returncode == 0, said
        assert "learnagent review" in said and "no repo adapter yet" in said  # verbose: its note is shown
        assert f"learnagent: episode {eid} accepted" in said
        assert episode(store, eid)["outcome"] == "accepted"
    cache = pc_repo.parent / "pc-home"
    assert not list(cache.rglob("pyvenv.cfg")), "pre-commit built a Python environment"
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    assert size < 5_000_000, size  # a clone of the manifest + script (the old hook: 6.2 GB)


def test_without_learnagent_on_path_the_commit_goes_through_with_a_note(pc_repo, monkeypatch):
    commit_config(pc_repo, hooks_config(pc_repo.parent, review=True))
    pre_commit(pc_repo, "install", "--hook-type", "pre-commit", "--hook-type", "post-commit")
    (pc_repo / "calc.py").write_text(SUB["calc.py"])
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                if not (Path(p) / "learnagent").exists())
    # the hook scripts pre-commit installed call it by the interpreter path they were installed with
    env = {**os.environ, "PATH": bare_path, "PRE_COMMIT_HOME": str(pc_repo.parent / "pc-home")}
    out = subprocess.run(["git", "commit", "-am", "add sub"], cwd=pc_repo, capture_output=True, text=True, env=env)
    said = out.stdout + out.stderr
    assert out.returncode == 0, said
    assert "learnagent: not found on PATH" in said and "'learnagent review' skipped" in said
    assert git(pc_repo, "log", "-1", "--format=%s").strip() == "add sub"


def test_our_hooks_and_pre_commit_together_uninstall_cleanly(pc_repo):
    folder = pc_repo / ".git" / "hooks"
    before = sorted(p.name for p in folder.iterdir())
    commit_config(pc_repo, hooks_config(pc_repo.parent))
    install_hooks(pc_repo)
    pre_commit(pc_repo, "install", "--hook-type", "post-commit")  # moves ours to post-commit.legacy
    assert (folder / "post-commit.legacy").exists()
    with Store() as store:
        eid, _ = propose(store, pc_repo, SUB)
        git(pc_repo, "commit", "-qam", "add sub")  # ours runs twice (legacy + framework): counted once
        assert episode(store, eid)["outcome"] == "accepted"
        assert store.conn.execute("SELECT COUNT(*) FROM outcome_events WHERE episode_id = ? AND kind = 'verdict'",
                                  (eid,)).fetchone()[0] == 1
    assert "post-commit: removed" in uninstall_hooks(pc_repo)
    pre_commit(pc_repo, "uninstall", "--hook-type", "post-commit")
    assert sorted(p.name for p in folder.iterdir()) == before


# ---------------------------------------------------------------- review with a real adapter

@pytest.fixture
def adapter_repo(pc_repo, tiny_model_dir):
    """A promoted LoRA (random, non-zero: init_lora_weights=False) on the tiny model, via the registry's files."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    root = Repository.at(pc_repo).adapters_dir
    lora.save_pretrained(root / "v0001")
    (root / "v0001" / "lineage.json").write_text(json.dumps({"episodes": []}))
    (root / "PROMOTED").write_text(json.dumps({"version": "v0001", "history": []}))
    (pc_repo / ".learnagent").mkdir()
    (pc_repo / ".learnagent" / "config.toml").write_text(f'[model]\nname = "local:{tiny_model_dir}"\n')
    return pc_repo


def stage(repo):
    (repo / "calc.py").write_text(SUB["calc.py"] + "\n\nclass Store:\n    pass\n")
    git(repo, "add", "calc.py")


def test_review_without_adapter_is_a_note(pc_repo):
    stage(pc_repo)
    said = []
    assert review(Repository.at(pc_repo), strict=True, say=said.append) == 0
    assert len(said) == 1 and "no repo adapter" in said[0]


def test_review_scores_staged_lines_with_and_without_the_adapter(adapter_repo):
    stage(adapter_repo)
    blocks = staged_blocks(adapter_repo)
    assert blocks == [("calc.py", 3, ["", "", "def sub(a, b):", "    return a - b", "", "", "class Store:", "    pass"])]
    said = []
    assert review(Repository.at(adapter_repo), strict=True, margin=-100.0, say=said.append) == 1  # everything flagged
    flagged = [s for s in said if "off-convention" in s]
    assert len(flagged) == 4 and flagged[0].startswith("calc.py:5: ")
    deltas = [float(s.split("off-convention (")[1].split(" ")[0]) for s in flagged]
    assert said[-1].startswith("learnagent review: 4 of 4 staged lines")
    said.clear()
    assert review(Repository.at(adapter_repo), strict=True, margin=100.0, say=said.append) == 0
    assert said == ["learnagent review: 0 of 4 staged lines look unusual for this repository (adapter v0001, margin 100)"]
    assert any(abs(d) >= 0.005 for d in deltas)  # the adapter really changes the scores


def test_strict_review_blocks_a_commit_through_pre_commit(adapter_repo):
    commit_config(adapter_repo, hooks_config(adapter_repo.parent, review=True,
                                             review_args=["--strict", "--margin=-100"]))
    pre_commit(adapter_repo, "install", "--hook-type", "pre-commit")
    stage(adapter_repo)
    out = subprocess.run(["git", "commit", "-m", "blocked"], cwd=adapter_repo, capture_output=True, text=True)
    assert out.returncode != 0 and "off-convention" in out.stdout + out.stderr
    assert git(adapter_repo, "log", "-1", "--format=%s").strip() == "pre-commit config"
