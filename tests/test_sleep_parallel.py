"""`sleep` under `accelerate launch` (issue 14): two real processes on CPU (gloo), the tiny model.

- Data parallel is the same optimizer step: 2 processes with grad_accum 1 end with the weights one
  process gets with grad_accum 2 on the same items (gradients averaged across processes).
- The real CLI launched twice over: one night, one version, every state row written once (rank 0
  alone writes the registry, the states, the adapter), and the result printed once.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from learnagent.store.episodes import Store
from learnagent.store.sleep_steps import STATES, SleepSteps
from learnagent.core.repository import Repository

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


def _launch(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


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
