"""No planted secret reaches the store, the training pairs, or adapter metadata.

A temporary repository holds realistic FAKE secrets (tests/secret_samples.py) in files, in
command output and in its commit history. They are pushed through the Store API, through a
real `learnagent do` run (scripted model reading the files and printing them with `run`), and
through `build_pairs`; then every text column of every table, the raw database files, the
pairs and the adapter folders are searched for each secret value.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.store.episodes import Store
from secret_samples import ALL_SECRET_VALUES, SAMPLES
from learnagent.core.repository import Repository

S = {name: value for name, (_text, value) in SAMPLES.items()}


def _leaks(text: str) -> list[str]:
    return [v for v in ALL_SECRET_VALUES if v in text]


def _dump_store() -> str:
    """Every value of every row of every table, as text."""
    with Store() as store:
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = [f"{t}: {tuple(r)}" for t in tables for r in store.conn.execute(f"SELECT * FROM {t}")]
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return "\n".join(rows)


def _raw_db_bytes() -> str:
    return b"".join(p.read_bytes() for p in home.db_path().parent.glob("learnagent.db*")).decode("latin-1")


@pytest.fixture
def secret_repo(git_repo):
    r = git_repo
    (r / ".env").write_text(SAMPLES["openai_proj"][0] + "\n" + SAMPLES["aws_id"][0] + "\n")
    (r / "settings.py").write_text("\n".join([
        SAMPLES["django_secret"][0], SAMPLES["postgres_url"][0].replace("DATABASE_URL=", "DATABASE_URL = '") + "'",
        SAMPLES["stripe"][0], SAMPLES["bearer_header"][0], SAMPLES["api_key_hex"][0], ""]))
    (r / "deploy.sh").write_text("\n".join([SAMPLES["github_oauth"][0], SAMPLES["slack_bot"][0],
                                            SAMPLES["gitlab"][0], SAMPLES["npm"][0], ""]))
    (r / "AGENTS.md").write_text(f"Use snake_case. Notify {SAMPLES['slack_webhook'][0]} after deploys.\n"
                                 f"Staging token: {S['github_server']}\n")
    (r / "old_keys.txt").write_text(SAMPLES["aws_secret"][0] + "\n" + SAMPLES["pem"][0] + "\n")
    git(r, "add", "settings.py", "deploy.sh", "AGENTS.md", "old_keys.txt")
    git(r, "commit", "-q", "-m", f"add config (temporary key {S['stripe_rk']})")
    git(r, "rm", "-q", "old_keys.txt")
    git(r, "commit", "-q", "-m", "remove keys")
    return r


def test_store_api_scrubs_every_text_field(secret_repo):
    every = "\n".join(text for text, _ in SAMPLES.values())
    with Store() as store:
        rid = store.ensure_repo(Repository.at(secret_repo))
        eid = store.create_episode(rid, f"rotate {S['openai']} and {S['anthropic']}")
        store.add_message(eid, 0, "system", "You are a coding agent.")
        store.add_message(eid, 0, "user", every)
        store.add_message(eid, 1, "assistant", f"<run>curl -H 'Authorization: Bearer {S['bearer_header']}'</run>")
        store.add_tool_call(eid, 1, "run", {"cmd": every}, every, True, 0.1)
        store.add_tool_call(eid, 2, "write", {"path": "k.pem", "content": SAMPLES["openssh"][0]}, "ok", True, 0.1)
        store.add_test_run(eid, "final", f"pytest --token {S['huggingface']}", 1, every, 1.0)
        store.finish_episode(eid, "failed", final_diff="+" + every.replace("\n", "\n+"), summary=every, error=every)
        store.set_outcome(eid, "accepted", every)
    dump = _dump_store()
    assert _leaks(dump) == []
    assert "[REDACTED:" in dump
    assert _leaks(_raw_db_bytes()) == []


def test_real_do_run_reading_files_and_printing_secrets(secret_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [
        "<read path=\"settings.py\"/>",
        "<read path=\".env\"/>",  # refused by .learnagentignore defaults
        "<run>cat deploy.sh settings.py; cat .env; git log -p --all | head -80</run>",
        f"<write path=\"new_config.py\">\nSTRIPE = '{S['stripe']}'\nGH = '{S['github_pat']}'\n</write>",
        f"<finish>Configured the client with {S['openai']}</finish>",
    ])
    out = run_cli("do", f"wire up the client with key {S['google']}", "--model", f"scripted:{script}",
                  "--no-apply", "--sandbox", "none", cwd=secret_repo)
    assert out.returncode == 0, out.stderr + out.stdout
    dump = _dump_store()
    assert "DATABASE_URL" in dump and "git log" in dump  # the episode really holds the outputs
    assert "excluded by .learnagentignore" in dump
    assert _leaks(dump) == []
    assert _leaks(_raw_db_bytes()) == []
    shown = run_cli("show", json.loads(run_cli("log", "--json", cwd=secret_repo).stdout)[0]["id"], "--json",
                    cwd=secret_repo).stdout
    assert _leaks(shown) == []


def test_training_pairs_and_adapter_metadata_hold_no_secrets(secret_repo, tiny_model_dir):
    from learnagent.learning.pairs import build_pairs, replay_prompts
    from learnagent.learning.registry import Registry

    every = "\n".join(text for text, _ in SAMPLES.values())
    with Store() as store:
        rid = store.ensure_repo(Repository.at(secret_repo))
        ids = []
        for i in range(6):
            eid = store.create_episode(rid, f"task {i}: use {S['openai']}", started_at=time.time() - i)
            store.add_message(eid, 0, "user", f"task {i} {every}")
            store.add_message(eid, 1, "assistant", f"<finish>{every}</finish>")
            store.add_tool_call(eid, 0, "run", {"cmd": "cat settings.py"}, every, True, 0.1)
            store.add_test_run(eid, "final", "pytest", 0, every, 0.2)
            store.finish_episode(eid, "finished", final_diff=f"+x = {i}\n+{every}", summary=every)
            store.set_outcome(eid, "accepted", "applied")
            ids.append(eid)
        train, held = build_pairs(store, rid)
        assert len(train) + len(held) == 6
        pairs_text = json.dumps([dataclasses.asdict(p) for p in train + held])
        assert "task 0" in pairs_text and "[REDACTED:" in pairs_text
        assert _leaks(pairs_text) == []
        assert _leaks(json.dumps(replay_prompts(store, rid, [], 4))) == []

        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        reg = Registry(store, Repository.at(secret_repo))
        version = reg.reserve(parent=None, method="opsd", base_model=str(tiny_model_dir))
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
        model.save_pretrained(reg.folder(version))
        reg.finish(version, metrics={"gap": 0.1}, episode_ids=ids, config={})
    meta = "\n".join(p.read_text(errors="replace") for p in Repository.at(secret_repo).adapters_dir.rglob("*")
                     if p.is_file() and p.suffix in (".json", ".md", ".txt", "") and p.stat().st_size < 1_000_000)
    assert _leaks(meta + _dump_store()) == []


def test_conventions_files_in_the_training_context_are_redacted(secret_repo):
    from learnagent.learning.pairs import conventions_text

    text = conventions_text(secret_repo, 4000)
    assert "Use snake_case" in text
    assert _leaks(text) == []
