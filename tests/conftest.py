import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_model.py and friends

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def learnagent_home(tmp_path_factory, monkeypatch):
    """Every test gets its own data home; the model cache stays shared (slow tests need the real model)."""
    home = tmp_path_factory.mktemp("lahome")
    monkeypatch.setenv("LEARNAGENT_HOME", str(home))
    monkeypatch.setenv("LEARNAGENT_CONFIG", str(home / "no-user-config.toml"))  # not the developer's own
    return home


@pytest.fixture(autouse=True)
def private_system_tmp(tmp_path_factory, monkeypatch):
    """Every test gets its own system tmp dir (TMPDIR, also for the CLI subprocesses): sandbox tmp folders
    land there, and `gc` in a test sees only that test's orphans, never other processes' on the machine."""
    import tempfile

    tmp = tmp_path_factory.mktemp("systmp")
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    return tmp


def git(cwd, *args, check=True, env=None):
    full_env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@example.com",
                    GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@example.com", **(env or {}))
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=full_env)
    if check and out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr}")
    return out.stdout


@pytest.fixture
def git_repo(tmp_path):
    """A small Python repository with one commit and a passing test."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "t@example.com")
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tiny_model import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: on 2 shared cores, more threads than free cores makes
    torch ~20x slower here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster on loopback (tests/pg_server.py); skipped where the server is
    not installed, a failure when LEARNAGENT_REQUIRE_PG=1 (.ci/run)."""
    from pg_server import Cluster, server_bin

    bin_dir = server_bin()
    if bin_dir is None:
        if os.environ.get("LEARNAGENT_REQUIRE_PG") == "1":
            pytest.fail("PostgreSQL's server programs are not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = Cluster(bin_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster, request):
    """The URL of a fresh, empty database in the throwaway cluster, one per test."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    return pg_cluster.create_database(name)
