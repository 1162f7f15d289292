"""`sleep` under `accelerate launch` (issue 14): two real processes on CPU (gloo), the tiny model.

- Data parallel is the same optimizer step: 2 processes with grad_accum 1 end with the weights one
  process gets with grad_accum 2 on the same items (gradients averaged across processes).
- The real CLI launched twice over: one night, one version, every state row written once (rank 0
  alone writes the registry, the states, the adapter), and the result printed once.
- `sleep --store URL --repo NAME` (real PostgreSQL, no checkout) launched twice over: a process killed
  mid-night leaves it resumable; the resumed night ends as the one-process night with grad_accum 2 on
  a copy of the same store does (the same weights, the same gate numbers and decision).
"""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from learnagent.store.episodes import Store
from learnagent.store.sleep_steps import STATES, SleepSteps
from learnagent.core.repository import Repository
from test_sleep_store import TEAM_NAME, team_store  # noqa: F401 (the fixture: episodes pushed to PostgreSQL)

ACCELERATE = Path(sys.executable).parent / "accelerate"
pytestmark = pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate is not installed (pip install accelerate)")


def _env(tmp_path: Path) -> dict:
    # no GPU for these processes (gloo on CPU), one torch thread each: two shared cores
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", COLUMNS="120",
                PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
                HF_HOME=str(tmp_path / "hf"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_cmd(args: list[str]) -> list[str]:
    # --multi_gpu with CUDA hidden: torchrun's path, gloo on CPU (`--cpu --num_processes 2` starts ONE
    # process in accelerate 1.15: its multi-CPU path is mpirun)
    return [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args]


def _launch(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_launch_cmd(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _rank_pid(launcher: int, rank: int) -> int:
    import psutil

    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "learnagent.cli.app" in child.cmdline():
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no process of rank {rank} under the launcher")


_TRAIN = r"""
import json, sys
from pathlib import Path
from learnagent.learning import parallel
from learnagent.learning.pairs import Pair
from learnagent.learning.sft import train_sft
from learnagent.learning.train_common import TrainConfig

model, out, accum = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
r = parallel.init()
pairs = [Pair(f"ep{i}", f"def helper_{i}(", "", f"x{i}):\n    return {i} + x{i}\n") for i in range(6)]
cfg = TrainConfig(steps=3, grad_accum=accum, rank=4, lr=5e-3, checkpoint_every=0, low_priority=False)
res = train_sft(model, pairs, None, prev_adapter=None, out_dir=out, config=cfg, progress=False)
if r.main:
    print(json.dumps({"world": r.world, "tokens": res.tokens, "steps": res.steps, "losses": res.losses}))
parallel.close()
"""


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_two_processes_take_the_step_one_process_takes_with_twice_the_accumulation(tiny_model_dir, tmp_path):
    import json

    import torch

    env = _env(tmp_path)
    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    two = _launch([str(script), str(tiny_model_dir), str(tmp_path / "two"), "1"], tmp_path, env)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "one"), "2"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    r2, r1 = json.loads(two.stdout.strip().splitlines()[-1]), json.loads(one.stdout.strip().splitlines()[-1])
    assert r2["world"] == 2 and r1["world"] == 1
    assert r2["tokens"] == r1["tokens"] and r2["steps"] == r1["steps"] == 3  # the same items, all counted
    assert r2["losses"] == pytest.approx(r1["losses"], rel=1e-4)
    w2, w1 = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert w2.keys() == w1.keys()
    moved = 0.0
    for name in w1:
        assert torch.allclose(w2[name], w1[name], atol=1e-5, rtol=1e-4), name
        moved = max(moved, float(w1[name].abs().max()))
    assert moved > 0  # trained (lora_B starts at zero)
    assert not list((tmp_path / "two").glob(".save-*"))  # one writer


def test_sleep_under_accelerate_launch_makes_one_night(git_repo, tiny_model_dir, tmp_path):
    from test_crash_safety import _check_adapters, _tiny_sleep_repo

    _tiny_sleep_repo(git_repo, tiny_model_dir, trained=3)
    out = _launch(["-m", "learnagent.cli.app", "sleep", "--steps", "2"], git_repo, _env(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    verdicts = [ln for ln in out.stdout.splitlines() if "promoted v0001" in ln or "rejected:" in ln]
    assert len(verdicts) == 1, out.stdout  # printed by rank 0 only
    assert "training v0001" in out.stdout and "error" not in (out.stdout + out.stderr).lower()
    with Store() as store:
        rid = store.ensure_repo(Repository.at(git_repo))
        versions = [r[0] for r in store.conn.execute("SELECT version FROM adapters WHERE repo_id = ?", (rid,))]
        states = [s.state for s in SleepSteps(store.conn, rid).history("v0001")]
    assert versions == ["v0001"] and states == list(STATES)  # each transition once: one writer
    assert sorted(p.name for p in Repository.at(git_repo).adapters_dir.glob("v*")) == ["v0001"]
    if "rejected:" in out.stdout:
        from cli_helpers import run_cli

        assert run_cli("adapters", "use", "v0001", cwd=git_repo).returncode == 0
    _check_adapters(git_repo, tiny_model_dir, "after a 2-process sleep")


def test_sleep_from_the_team_store_under_accelerate_launch(team_store, pg_cluster, tiny_model_dir, tmp_path,
                                                          monkeypatch, one_torch_thread):
    """`accelerate launch` (2 CPU processes, gloo) of `sleep --store URL --repo NAME` with no checkout
    on the machine, once killed on one process and resumed: one night's rows, one version with its
    gate decision, and the weights (and gate numbers) of the single-process `sleep --store` with
    grad_accum 2 on a copy of the same store."""
    from learnagent.core.repository import StoredRepository
    from learnagent.learning.sleep import SleepOptions
    from learnagent.services.sleep_night import sleep_night

    url, (train_ids, held_ids) = team_store
    solo_db = f"solo_{uuid.uuid4().hex[:8]}"  # the same store, byte for byte, for the one-process night
    pg_cluster.psql("postgres", f'CREATE DATABASE {solo_db} TEMPLATE "{url.rsplit("/", 1)[1]}"')
    box = tmp_path / "gpu-box"  # no checkout here; each night its own data home (its adapters)
    box.mkdir()
    env = _env(tmp_path) | {"LEARNAGENT_HOME": str(tmp_path / "home-2proc")}
    model = f"local:{tiny_model_dir}"
    args = ["-m", "learnagent.cli.app", "sleep", "--store", url, "--repo", TEAM_NAME, "--steps", "2", "--model", model]

    # one process fails (rank 1 killed once rank 0 starts training, before it can train a step): the
    # launcher ends the other, and the night is left where its rows say, to be resumed
    first = subprocess.Popen(_launch_cmd(args), cwd=box, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    for line in first.stdout:
        if "training v0001" in line:
            os.kill(_rank_pid(first.pid, 1), signal.SIGKILL)
            break
    first.communicate(timeout=600)
    assert first.returncode != 0
    with Store(url) as team:
        assert [s.state for s in team.sleep_steps(TEAM_NAME).history("v0001")] == ["reserved", "planned"]

    out = _launch(args, box, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming interrupted candidate v0001" in out.stdout
    # printed once (rank 0): the header, the stage lines, the verdict
    for line in ("sleep for github.com/acme/calc from the store", "training v0001 (opsd)", "gating v0001",
                 "sleep: v0001"):
        assert out.stdout.count(line) == 1, (line, out.stdout)
    assert "error" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr

    with Store(url) as team:
        rows = [(r["version"], r["state"]) for r in team.conn.execute(
            "SELECT version, state FROM sleep_steps WHERE repo_id = ? ORDER BY seq", (TEAM_NAME,))]
        assert rows == [("v0001", s) for s in STATES]  # one night, each transition once: one writer
        two = team.adapter(TEAM_NAME, "v0001")
        assert [r.version for r in team.adapters(TEAM_NAME)] == ["v0001"]
        decided = team.sleep_steps(TEAM_NAME).history("v0001")[-1].data
        lineage = set(team.adapter_episode_ids(TEAM_NAME, "v0001"))
    assert two.status == decided["status"] and two.reason == decided["reason"]
    assert two.reason in " ".join(out.stdout.split())  # (the terminal wraps it)
    assert two.status == ("promoted" if two.metrics["accepted"] else "rejected")  # the gate's decision, acted on
    assert lineage and lineage <= set(train_ids) and two.metrics["heldout_ids"] == held_ids
    two_dir = tmp_path / "home-2proc" / "adapters" / StoredRepository(TEAM_NAME, "calc").folder_name
    assert sorted(p.name for p in two_dir.glob("v*")) == ["v0001"]
    assert not [p for p in (two_dir / "v0001").rglob("*") if p.name.startswith(".save-") or p.name == "checkpoint"]

    # the same night in one process, grad_accum 2: the step two processes with grad_accum 1 take
    monkeypatch.setenv("LEARNAGENT_HOME", str(tmp_path / "home-1proc"))
    monkeypatch.chdir(box)
    solo_url = url.rsplit("/", 1)[0] + "/" + solo_db
    with Store(solo_url) as solo_store:
        repo = solo_store.find_stored_repo(TEAM_NAME)
        solo = sleep_night(repo, SleepOptions(steps=2, model=model,
                                              train_overrides={"grad_accum": 2, "low_priority": False}),
                           store=solo_store, train_progress=False)
        one = solo_store.adapter(TEAM_NAME, "v0001")
    assert solo.version == "v0001" and solo.status == two.status
    assert two.metrics["train"]["tokens"] == one.metrics["train"]["tokens"]  # the same items, all counted
    assert two.metrics["train"]["losses"] == pytest.approx(one.metrics["train"]["losses"], rel=1e-4)
    w2, w1 = _weights(two_dir / "v0001"), _weights(repo.adapters_dir / "v0001")
    assert w2.keys() == w1.keys()
    worst = max(float((w2[k] - w1[k]).abs().max()) for k in w1)
    assert worst <= 1e-6, worst  # measured 0.0 here: halving is exact, so (g1 + g2) / 2 == g1 / 2 + g2 / 2
    assert max(float(w1[k].abs().max()) for k in w1 if "lora_B" in k) > 0  # trained (lora_B starts at zero)
    code2, code1 = two.metrics["code"]["variants"]["adapter"], one.metrics["code"]["variants"]["adapter"]
    assert code2["lines"] == code1["lines"] and code2["nll"] == pytest.approx(code1["nll"], rel=1e-5)
