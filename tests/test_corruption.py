"""Damaged files give one-line errors that say what to do: the episode store, adapter weights."""

from __future__ import annotations

import shutil

import pytest

from cli_helpers import run_cli
from learnagent.core import home
from learnagent.core.errors import StoreError
from learnagent.store.episodes import Store
from learnagent.store.privacy import AdapterCorrupt, verify_adapter
from learnagent.core.repository import Repository
from repo_helpers import folder_repository


def _filled_store() -> None:
    with Store() as store:
        rid = store.ensure_repo(folder_repository(home.data_home()))
        for i in range(40):
            eid = store.create_episode(rid, f"task {i} " + "x" * 2000)
            store.add_message(eid, 0, "user", "y" * 4000)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize("keep", [0.5, 0.9, 4096, 50, 10])
def test_truncated_store_gives_a_one_line_error_with_the_way_out(keep):
    _filled_store()
    db = home.db_path()
    data = db.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    db.write_bytes(data[:cut])
    with pytest.raises(StoreError) as err:
        Store()
    msg = str(err.value)
    assert "\n" not in msg and "damaged" in msg and f"mv {db} {db}.broken" in msg


def test_a_store_that_only_looks_short_while_another_process_checkpoints_opens():
    """A checkpoint writes page 1 (the new page count) before the pages after it: for a moment
    a healthy store is shorter than its header says. That is not damage; it settles."""
    import threading
    import time

    _filled_store()
    db = home.db_path()
    data = db.read_bytes()
    db.write_bytes(data[:4096])  # page 1 written, the rest still to come
    def write_the_rest():  # in place, as a checkpoint does (write_bytes would truncate to 0 first)
        with open(db, "r+b") as fh:
            fh.seek(4096)
            fh.write(data[4096:])

    finish = threading.Timer(0.4, write_the_rest)
    finish.start()
    started = time.monotonic()
    with Store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 40
    finish.join()
    assert time.monotonic() - started >= 0.4


def test_foreign_file_in_place_of_the_store():
    home.db_path().parent.mkdir(parents=True, exist_ok=True)
    home.db_path().write_bytes(b"this is not a database at all\n" * 100)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store()


def test_moving_the_damaged_store_aside_recovers(git_repo):
    _filled_store()
    db = home.db_path()
    db.write_bytes(db.read_bytes()[:5000])
    out = run_cli("log", cwd=git_repo)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "damaged" in lines[0] and "Traceback" not in out.stderr
    shutil.move(db, str(db) + ".broken")
    out = run_cli("log", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert "No episodes" in out.stdout


def test_empty_file_is_a_new_store():
    home.db_path().parent.mkdir(parents=True, exist_ok=True)
    home.db_path().write_bytes(b"")
    with Store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 0


def test_truncated_peft_adapter_is_caught_before_the_loader(tiny_model_dir, tmp_path):
    """A real LoRA adapter of the tiny model: whole it verifies and loads; cut short it gives AdapterCorrupt."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path / "v0001"
    peft.save_pretrained(folder)
    verify_adapter(folder)
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(AdapterCorrupt, match="truncated") as err:
        verify_adapter(folder)
    assert "learnagent sleep" in str(err.value)
    # what the loader would have said instead: an exception from deep inside safetensors
    with pytest.raises((SafetensorError, OSError, RuntimeError, ValueError)):
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(folder))


def test_a_constraint_error_on_a_healthy_store_is_not_called_damage():
    """UNIQUE constraint failures and the like are bugs, not damage: the message must say the
    store is intact and must not advise moving it aside (that throws every episode away)."""
    import sqlite3

    from learnagent.store.db import store_error

    _filled_store()
    with Store() as store:
        rid = store.ensure_repo(folder_repository(home.data_home()))
        eid = store.create_episode(rid, "one")
        with pytest.raises(sqlite3.IntegrityError) as exc:
            store.create_episode(rid, "same id", episode_id=eid)
    msg = str(store_error(home.db_path(), str(exc.value)))
    assert "UNIQUE constraint failed" in msg and "intact" in msg and "\n" not in msg
    assert "damaged" not in msg and ".broken" not in msg and "mv " not in msg


def test_a_store_failing_its_integrity_check_is_damaged():
    from learnagent.store.db import integrity_problem, store_error

    _filled_store()
    db = home.db_path()
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 3 + 8: page * 3 + 200] = b"\xff" * 192  # scribble over a b-tree page; the header stays valid
    db.write_bytes(bytes(data))
    assert integrity_problem(db) is not None
    msg = str(store_error(db, "database disk image is malformed"))
    assert "damaged" in msg and "integrity check" in msg and f"mv {db} {db}.broken" in msg


def test_cli_reports_a_healthy_store_error_honestly(git_repo):
    """Through the real CLI: a constraint error raised by a command leaves one honest line."""
    _filled_store()
    with Store() as store:
        rid = store.ensure_repo(Repository.at(git_repo))
        store.create_episode(rid, "existing", episode_id="250101000000abcdef")
    code = ("import sys; from learnagent.cli import app as a; from learnagent.store.episodes import Store\n"
            "from learnagent.core.repository import find_repository\n"
            "def boom():\n"
            "    with Store() as s:\n"
            "        s.create_episode(s.ensure_repo(find_repository('.')), 'x', episode_id='250101000000abcdef')\n"
            "a.app.command('boom')(boom)\n"
            "sys.argv = ['learnagent', 'boom']; a.main()\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=git_repo, capture_output=True, text=True)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "UNIQUE constraint failed" in lines[0] and "intact" in lines[0] and "damaged" not in lines[0]
