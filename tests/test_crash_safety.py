"""SIGKILL `learnagent do` (and `sleep`) at random points: nothing is lost or half-written.

Each trial snapshots the user's working tree and index, starts a real `learnagent do` with a
scripted model whose script runs many slow commands, kills it with SIGKILL at a random moment,
then checks: the store passes `PRAGMA integrity_check`; the episode is absent or whole up to
where it stopped (contiguous messages, status 'running' until gc marks it 'interrupted'); the
user's files and index are byte-identical; `gc` removes every worktree and branch it left.
LEARNAGENT_CRASH_TRIALS sets the number of trials (default 6; 20 were run for the report).

`sleep` is killed two ways: at each write boundary of the adapter save and promotion (a driver
that dies at the registry's named checkpoints), and as the real CLI at random moments of its
whole run (start-up, model load, training, gate, promotion), checking after each kill that the
store is whole, the promoted adapter verifies and loads with peft, no episode was lost, and the
persisted sleep states agree with the folders (a sealed or promoted version is complete; a
decided one is no longer a candidate); after the last sleep no verdict is left un-acted on.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import run_cli, write_script
from conftest import git
from learnagent.core import home
from learnagent.core.repository import Repository
from learnagent.services import gc as gcmod
from learnagent.store.episodes import Store
from learnagent.store.sleep_steps import SleepSteps

TRIALS = int(os.environ.get("LEARNAGENT_CRASH_TRIALS", "6"))
STEPS = 14


def _snapshot(repo: Path) -> dict:
    """Every file of the working tree (untracked included) and the index, as bytes; plus HEAD and refs."""
    files = {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
             if p.is_file() and ".git" not in p.relative_to(repo).parts}
    files[".git/index"] = (repo / ".git" / "index").read_bytes()
    files["HEAD"] = git(repo, "rev-parse", "HEAD").encode()
    files["refs"] = "\n".join(ln for ln in git(repo, "for-each-ref", "refs/heads").splitlines()
                              if "refs/heads/learnagent/" not in ln).encode()
    return files


def _script(tmp_path: Path) -> Path:
    responses = [f"step {i}\n<run>sleep 0.2; echo step-{i}</run>" for i in range(STEPS)]
    responses.insert(3, "<write path=\"calc.py\">\ndef add(a, b):\n    return b + a\n</write>")
    responses.append("<finish>all steps done</finish>")
    return write_script(tmp_path / "long.json", responses)


def _start_do(repo: Path, script: Path) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="120", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    return subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", "do", "refactor add", "--model",
                             f"scripted:{script}", "--no-apply", "--sandbox", "none"],
                            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _check_store_consistent() -> list[sqlite3.Row]:
    db = sqlite3.connect(home.db_path())
    db.row_factory = sqlite3.Row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'episodes'").fetchone() is None:
        return []  # killed before the first migration committed: an empty store, which is consistent
    episodes = db.execute("SELECT * FROM episodes").fetchall()
    for ep in episodes:
        seqs = [r[0] for r in db.execute("SELECT seq FROM messages WHERE episode_id = ? ORDER BY seq", (ep["id"],))]
        assert seqs == list(range(len(seqs)))
        calls = db.execute("SELECT COUNT(*) FROM model_calls WHERE episode_id = ?", (ep["id"],)).fetchone()[0]
        assert calls <= len(seqs)
    db.close()
    return episodes


def test_sigkill_do_at_random_points_loses_nothing(git_repo, tmp_path):
    script = _script(tmp_path)
    (git_repo / "notes.txt").write_text("uncommitted user work\n")  # an untracked file
    with open(git_repo / "calc.py", "a") as fh:
        fh.write("# the user's uncommitted edit\n")  # a modified tracked file
    git(git_repo, "add", "calc.py")  # ... staged, so the index holds something of the user's
    rng = random.Random(20240601)
    outcomes = {"before recording": 0, "mid-episode": 0, "finished": 0}
    for trial in range(TRIALS):
        before = _snapshot(git_repo)
        n_before = len(_check_store_consistent()) if home.db_path().exists() else 0
        proc = _start_do(git_repo, script)
        time.sleep(rng.uniform(0.3, 7.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        episodes = _check_store_consistent()
        assert len(episodes) in (n_before, n_before + 1), f"trial {trial}"
        new = [e for e in episodes if e["status"] == "running"]
        if len(episodes) == n_before:
            outcomes["before recording"] += 1
        elif new:
            outcomes["mid-episode"] += 1
        else:
            outcomes["finished"] += 1
        assert _snapshot(git_repo) == before, f"trial {trial}: the user's tree or index changed"
        with Store() as store:  # gc: dead runs interrupted, their worktrees and branches gone
            gcmod.collect(store, Repository.at(git_repo), now=time.time() + gcmod.UNKNOWN_GRACE_S + 5)
            running = store.conn.execute("SELECT COUNT(*) FROM episodes WHERE status = 'running'").fetchone()[0]
            assert running == 0, f"trial {trial}"
    print(f"\n{TRIALS} SIGKILL trials: {outcomes}")
    # finished runs keep their branch (outcome pending: the user may accept); resolve them, then gc
    with Store() as store:
        store.conn.execute("UPDATE episodes SET outcome = 'rejected' WHERE status = 'finished'")
    out = run_cli("gc", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    assert git(git_repo, "branch", "--list", "learnagent/*").strip() == ""
    assert git(git_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    wt_dir = Repository.at(git_repo).worktrees_dir
    assert not wt_dir.exists() or list(wt_dir.iterdir()) == []
    with Store() as store:
        statuses = {r[0] for r in store.conn.execute("SELECT DISTINCT status FROM episodes")}
    assert statuses <= {"interrupted", "finished"}


# ---- sleep: SIGKILL at every write boundary of an adapter's save and promotion -----------------

_REGISTRY_DRIVER = r"""
import os, shutil, signal, sys
from pathlib import Path
from learnagent.core.repository import Repository
from learnagent.learning import registry
from learnagent.store.episodes import Store

repo, kill_at, source = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
calls = []
def checkpoint(name):
    calls.append(name)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # a real, unannounced death: no finally, no atexit
registry._checkpoint = checkpoint
with Store() as store:
    reg = registry.Registry(store, Repository.at(repo))
    version = reg.reserve(parent=None, method="opsd", base_model="tiny")
    shutil.copytree(source, reg.folder(version), dirs_exist_ok=True)
    reg.finish(version, metrics={"gap": 0.1}, episode_ids=[], config={})
    reg.promote(version)
print("checkpoints", len(calls), version)
"""


def _run_driver(repo: Path, kill_at: int, source: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _REGISTRY_DRIVER, str(repo), str(kill_at), str(source)],
                          capture_output=True, text=True, timeout=120)


def test_sigkill_during_adapter_save_and_promotion_keeps_a_loadable_adapter(git_repo, tmp_path, tiny_model_dir):
    """The part of `sleep` that writes and promotes an adapter, killed at each of its write boundaries."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from learnagent.learning.registry import promoted_adapter
    from learnagent.store.privacy import verify_adapter

    source = tmp_path / "trained"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                   LoraConfig(r=2, lora_alpha=4, target_modules="all-linear")).save_pretrained(source)
    first = _run_driver(git_repo, 0, source)  # a whole run: counts the checkpoints, promotes v0001
    assert first.returncode == 0, first.stderr
    n_checkpoints = int(first.stdout.split()[1])
    assert n_checkpoints >= 3
    promoted = ["v0001"]
    for kill_at in range(1, n_checkpoints + 1):
        out = _run_driver(git_repo, kill_at, source)
        assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
        found = promoted_adapter(Repository.at(git_repo))
        assert found is not None, f"killed at checkpoint {kill_at}: no adapter to load"
        version, folder = found
        verify_adapter(folder)  # complete and not truncated
        assert version in promoted or version == f"v{kill_at + 1:04d}"
        promoted.append(version)
        _check_store_consistent()
    version, folder = promoted_adapter(Repository.at(git_repo))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(folder))
    assert model is not None
    again = _run_driver(git_repo, 0, source)  # nothing left half-done blocks the next run
    assert again.returncode == 0, again.stderr
    assert promoted_adapter(Repository.at(git_repo))[0] == again.stdout.split()[2]


# ---- sleep: SIGKILL the real `learnagent sleep` (tiny model) at random moments ------------------

SLEEP_TRIALS = int(os.environ.get("LEARNAGENT_CRASH_TRIALS", "5"))
SLEEP_STEPS = "2"
# Lines the CLI prints as it goes (stdout unbuffered, stderr merged), in order: which stage a kill hit.
PHASES = (("start-up", None), ("load model", "training v"), ("load model", "resuming interrupted candidate"),
          ("train", "Loading weights"), ("gate", "gating v"), ("exit", "promoted v"), ("exit", "rejected:"))


def _sleep_env() -> dict:
    # one thread per torch process: two shared cores, and the test process loads the model too
    return dict(os.environ, COLUMNS="120", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false",
                PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])


def _start_sleep(repo: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "learnagent.cli.app", "sleep", "--steps", SLEEP_STEPS],
                                cwd=repo, env=_sleep_env(), stdout=fh, stderr=subprocess.STDOUT)


def _tiny_sleep_repo(repo: Path, tiny_model_dir: Path, *, trained: int) -> None:
    """`repo` configured to sleep on the tiny model, with `trained` good episodes and one held out."""
    from learnagent.core.config import Config, save_config

    cfg = Config()
    cfg.model.name = f"local:{tiny_model_dir}"
    save_config(repo, cfg)
    with Store() as store:
        rid = store.ensure_repo(Repository.at(repo))
        for _ in range(trained):
            _add_good_episode(store, rid, heldout=False)
        _add_good_episode(store, rid, heldout=True)


def _add_good_episode(store, repo_id: str, *, heldout: bool) -> str:
    """A history episode (always 'good'); its id is chosen so the split puts it where asked."""
    from learnagent.learning.pairs import is_heldout

    n = store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    while True:
        eid = f"ep{n:04d}"
        n += 1
        exists = store.conn.execute("SELECT 1 FROM episodes WHERE id = ?", (eid,)).fetchone()
        if not exists and is_heldout(eid, 0.2) == heldout:
            break
    store.create_episode(repo_id, f"add helper {eid}", source="history", episode_id=eid)
    store.finish_episode(eid, "finished", final_diff=f"--- a/calc.py\n+++ b/calc.py\n+def helper_{eid}():\n"
                                                     f"+    return 1\n")
    return eid


def _phase(log_text: str, folder: Path | None) -> str:
    """The last stage the killed run announced; 'seal/promote' once the candidate's lineage is written."""
    phase, at = "start-up", -1
    for name, marker in PHASES:
        pos = log_text.find(marker) if marker else -1  # first: the gate loads weights again
        if pos > at:
            phase, at = name, pos
    if phase == "gate" and folder is not None and (folder / "lineage.json").is_file():
        phase = "seal/promote"  # finished gating: sealing the folder, writing the pointer
    return phase


def _check_adapters(repo: Path, tiny_model_dir: Path, what: str) -> str:
    """The promoted adapter is whole and loads; nothing half-written is, or can become, promoted."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from learnagent.learning.registry import Registry, is_complete, promoted_adapter, read_pointer
    from learnagent.store.privacy import verify_adapter

    root = Repository.at(repo).adapters_dir
    pointer = read_pointer(root)
    assert pointer is not None, f"{what}: the PROMOTED pointer is missing or unreadable"
    found = promoted_adapter(Repository.at(repo))
    assert found is not None, f"{what}: no adapter to load"
    version, folder = found
    # the pointer itself names a complete folder (no silent fall-back to an older one)
    assert version == pointer["version"] and is_complete(folder), f"{what}: pointer names {pointer['version']}"
    verify_adapter(folder)
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".save-")
                 or p.name.startswith(".state-") or p.name == "checkpoint"]
    assert leftovers == [], f"{what}: half-written files in the promoted {version}: {leftovers}"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(folder))
    assert any("lora_" in name for name, _ in model.named_parameters()), f"{what}: {version} loaded no LoRA"
    with Store() as store:  # the table agrees with the pointer once read (sync repairs a kill in between)
        rows = Registry(store, Repository.at(repo)).list()
    promoted_rows = [r.version for r in rows if r.status == "promoted"]
    assert promoted_rows == [version], f"{what}: table says {promoted_rows}, pointer {version}"
    for row in rows:  # a folder sealed with lineage.json holds whole weights
        if is_complete(root / row.version):
            verify_adapter(root / row.version)
    with Store() as store:  # the persisted sleep states agree with the folders and the table
        steps = SleepSteps(store.conn, store.ensure_repo(Repository.at(repo)))
        for row in rows:
            last = steps.last(row.version)
            assert last is not None, f"{what}: {row.version} has no sleep state"
            if last.state in ("sealed", "decided") and last.data.get("status") != "rejected":
                assert is_complete(root / row.version), f"{what}: {row.version} {last.state}, folder incomplete"
            if last.state == "decided":  # (`adapters use` may promote a rejected one by hand later)
                assert row.status != "candidate", f"{what}: {row.version} decided, still a candidate"
            else:
                assert row.status == "candidate" or row.version == version, f"{what}: {row.version}"
    return version


def _undecided(repo: Path) -> list[str]:
    """Versions whose last sleep state is gated or sealed (a verdict not yet acted on)."""
    with Store() as store:
        steps = SleepSteps(store.conn, store.ensure_repo(Repository.at(repo)))
        versions = [r[0] for r in store.conn.execute("SELECT version FROM adapters")]
        return [v for v in versions if (last := steps.last(v)) and last.state in ("gated", "sealed")]


def test_sigkill_sleep_at_random_points_keeps_store_and_adapter_whole(git_repo, tmp_path, tiny_model_dir):
    """Real `learnagent sleep` processes killed at random moments of start-up, load, training, gate, promotion.

    Trials chain: each killed sleep starts from what the previous kill left (so kills also land
    in resumed runs), and one new good episode is recorded before each. A sleep that ends before
    its kill must have succeeded. A final un-killed sleep must finish cleanly.
    """
    from learnagent.learning.registry import Registry

    _tiny_sleep_repo(git_repo, tiny_model_dir, trained=3)

    log = tmp_path / "sleep0.log"
    started = time.monotonic()
    first = _start_sleep(git_repo, log)
    assert first.wait(timeout=300) == 0, log.read_text()
    full_run = time.monotonic() - started
    if "rejected:" in log.read_text():  # the gate's call on a random model: promote v0001 by hand
        out = run_cli("adapters", "use", "v0001", cwd=git_repo)
        assert out.returncode == 0, out.stderr
    else:
        assert "promoted v0001" in log.read_text(), log.read_text()
    assert _check_adapters(git_repo, tiny_model_dir, "first sleep") == "v0001"

    rng = random.Random(int(os.environ.get("LEARNAGENT_CRASH_SEED", "20240602")))
    phases: dict[str, int] = {}
    for trial in range(SLEEP_TRIALS):
        with Store() as store:
            _add_good_episode(store, store.ensure_repo(Repository.at(git_repo)), heldout=False)
            n_episodes = store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
        log = tmp_path / f"sleep{trial + 1}.log"
        proc = _start_sleep(git_repo, log)
        try:
            proc.wait(timeout=rng.uniform(0.05, full_run))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=30)
        text = log.read_text()
        if rc == -signal.SIGKILL:
            m = re.search(r"(?:training|resuming interrupted candidate) (v\d{4})", text)
            phase = _phase(text, Repository.at(git_repo).adapters_dir / m.group(1) if m else None)
        else:  # it ended before the kill: it must have ended well
            assert rc == 0 and "error" not in text.lower(), f"trial {trial}: exit {rc}\n{text}"
            phase = "finished"
        phases[phase] = phases.get(phase, 0) + 1
        what = f"trial {trial} ({phase})"
        _check_store_consistent()
        with Store() as store:
            assert store.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == n_episodes, what
        _check_adapters(git_repo, tiny_model_dir, what)
    print(f"\n{SLEEP_TRIALS} SIGKILL sleep trials (full run {full_run:.1f} s): {phases}")

    out = run_cli("sleep", "--steps", SLEEP_STEPS, cwd=git_repo, env=_sleep_env(), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"promoted v\d{4}|rejected:|nothing new to learn", out.stdout), out.stdout
    assert "error" not in (out.stdout + out.stderr).lower()
    _check_store_consistent()
    _check_adapters(git_repo, tiny_model_dir, "after the final sleep")
    with Store() as store:
        assert Registry(store, Repository.at(git_repo)).resumable() is None  # nothing left half-trained
    assert _undecided(git_repo) == []  # every verdict a killed sleep left was acted on


_KILL_MID_SAVE = r"""
import os, signal, sys
from pathlib import Path
from peft import PeftModel
from learnagent.learning.sleep import SleepOptions
from learnagent.core.repository import Repository
from learnagent.services.sleep_night import sleep_night

save = PeftModel.save_pretrained
def dying_save(self, save_directory, *args, **kwargs):
    save(self, save_directory, *args, **kwargs)
    for f in Path(save_directory).rglob("*.safetensors"):  # as if killed half-way through the write
        os.truncate(f, f.stat().st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)
PeftModel.save_pretrained = dying_save
sleep_night(Repository.at(sys.argv[1]), SleepOptions(steps=int(sys.argv[2])), train_progress=False)
"""


def test_sleep_killed_mid_save_resumes_without_promoting_the_partial_save(git_repo, tiny_model_dir):
    """A kill inside the adapter save leaves a `.save-*` temp folder with a truncated file in the
    candidate; the resumed sleep must not seal and promote the folder with it inside."""

    _tiny_sleep_repo(git_repo, tiny_model_dir, trained=2)
    out = subprocess.run([sys.executable, "-c", _KILL_MID_SAVE, str(git_repo), SLEEP_STEPS], cwd=git_repo,
                         env=_sleep_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    assert list((Repository.at(git_repo).adapters_dir / "v0001").glob(".save-*")), "the kill left no temp save"
    out = run_cli("sleep", "--steps", SLEEP_STEPS, cwd=git_repo, env=_sleep_env(), timeout=300)
    assert out.returncode == 0 and "v0001" in out.stdout, out.stdout + out.stderr
    if "rejected:" in out.stdout:
        assert run_cli("adapters", "use", "v0001", cwd=git_repo).returncode == 0
    assert _check_adapters(git_repo, tiny_model_dir, "resumed after a kill mid-save") == "v0001"
