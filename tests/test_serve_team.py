"""The team's serving (issue 14): `learnagent serve --store` on the GPU box serves the team store's
repositories with their adapters, and a laptop's repository joined to the team (`team join`) runs
`do` on that server with the team's promoted adapter (`[team] serve`).

Real parts: a real `learnagent serve` (llama-cpp-python's server, the tiny model's F32 GGUF), real
SQLite and PostgreSQL team stores, the registry's real promotions (the calls `sleep --store`'s
decide step makes), the real CLI. The box and the laptop share one data home here (one machine):
the laptop reads nothing of the box's but the server and the team store.

Skipped where llama-cpp-python's server is not installed, except with LEARNAGENT_REQUIRE_LLAMA=1.
"""

from __future__ import annotations

import json
import os

import pytest

if os.environ.get("LEARNAGENT_REQUIRE_LLAMA") != "1":
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        pytest.importorskip(module, reason="llama-cpp-python[server] (learnagent[llama]) is not installed")

from cli_helpers import run_cli  # noqa: E402
from learnagent.core.repository import Repository, StoredRepository  # noqa: E402
from learnagent.store.episodes import Store  # noqa: E402
from serve_helpers import running_serve  # noqa: E402
from test_serve import CHAT, add_adapter, gguf_dir, in_process, served_names  # noqa: E402,F401 (gguf_dir: a fixture)

TEAM = "github.com/acme/api"
STORED = StoredRepository(TEAM, "api")


def team_registry(store):
    from learnagent.learning.registry import Registry
    from learnagent.store import team_rows

    team_rows.ensure_team_repo(store, TEAM)  # what the first `push` of the repository makes
    return Registry(store, STORED)


@pytest.fixture
def laptop(git_repo, gguf_dir):
    """The laptop's repository, on the same local base model, joined to the team as TEAM."""
    from learnagent.services import team

    (git_repo / ".learnagent").mkdir(exist_ok=True)
    (git_repo / ".learnagent" / "config.toml").write_text(
        f'[model]\nname = "local:{gguf_dir}"\ngrammar = false\nmax_response_tokens = 24\n\n[budgets]\nmax_steps = 1\n')
    with Store() as local:
        assert team.join(local, Repository.at(git_repo), TEAM) == TEAM
    return git_repo


def user_config(team_url, serve_url: str) -> None:
    """The developer's own config (LEARNAGENT_CONFIG, set per test by conftest)."""
    with open(os.environ["LEARNAGENT_CONFIG"], "w") as fh:
        fh.write(f'[team]\nurl = "{team_url}"\nserve = "{serve_url}"\n')


def laptop_model(repo, notes: list[str] | None = None):
    """The model `do` makes in `repo` (services.run_task.open_model, as cli/do_cmd.py calls it)."""
    from learnagent.core.config import load_config
    from learnagent.services.run_task import open_model

    return open_model(load_config(repo).model, Repository.at(repo), on_info=None if notes is None else notes.append)


def test_serve_a_sqlite_team_store_laptop_do_uses_the_team_adapter_hot_swap_and_rollback(laptop, gguf_dir, tmp_path):
    from learnagent.core.repository import segment_of
    from learnagent.runtime.export import served_name

    team_db = tmp_path / "team.db"
    with Store(team_db) as team:  # trained and promoted on the box before its server starts
        reg = team_registry(team)
        v1 = add_adapter(reg, gguf_dir, seed=2)
        reg.promote(v1)
        v2 = add_adapter(reg, gguf_dir, seed=3)
    box = tmp_path / "gpu-box"  # no checkout there
    box.mkdir()
    # one safe, stable served name per team repository: no slash in the model part
    name1 = served_name(TEAM, v1)
    assert name1 == f"learnagent-{segment_of(TEAM)}-{v1}" and "/" not in name1
    assert segment_of(TEAM).startswith("github.com_acme_api-") and segment_of(TEAM) == STORED.folder_name
    assert served_name("0123456789ab", v1) == f"learnagent-0123456789ab-{v1}"  # a local key: as before

    bad = run_cli("serve", "--store", str(team_db), "--repo", "github.com/acme/nope", "--port", "0", cwd=box)
    assert bad.returncode == 2 and "no such repository" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    with running_serve("--store", str(team_db), "--model", f"local:{gguf_dir}", cwd=box,
                       log_path=tmp_path / "serve.log") as server:
        assert served_names(server) == [name1]  # a serve started after the promotion lists it
        user_config(team_db, server.url)

        # `do` in the joined repository: the team's adapter, through the team's server, recorded
        out = run_cli("do", "fix the bug in add", "--no-apply", "--json", "--sandbox", "none", cwd=laptop, timeout=300)
        assert out.returncode in (0, 1, 3), out.stderr + out.stdout  # 3: the one-step budget ran out
        assert f"team server {server.url}: {TEAM} adapter {v1}" in out.stdout + out.stderr
        eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
        episode = json.loads(run_cli("show", eid, "--json", cwd=laptop).stdout)
        assert episode["adapter_version"] == f"team:{v1}"
        assert {(c["engine"], c["adapter_version"]) for c in episode["model_calls"]} == {("serve:team", f"team:{v1}")}

        # a served reply equals in-process llama.cpp with the same adapter (and differs from the base)
        model = laptop_model(laptop)
        v1_text = in_process(gguf_dir, STORED.adapters_dir / v1)
        reply = model.complete(CHAT, max_tokens=24)
        assert reply.extra["request_model"] == f"openai/{name1}" and reply.extra["adapter"] == f"team:{v1}"
        assert reply.text == v1_text != in_process(gguf_dir)

        # a promotion on the box while the server runs: loaded into it (same process), the next `do` gets it
        with Store(team_db) as team:
            team_registry(team).promote(v2)
        assert served_names(server) == sorted([name1, served_name(TEAM, v2)])
        model = laptop_model(laptop)
        assert model.adapter_version == f"team:{v2}"
        assert model.complete(CHAT, max_tokens=24).text == in_process(gguf_dir, STORED.adapters_dir / v2) != v1_text

        # a rollback on the box (`adapters rollback --store`): the laptop is back on v1
        back = run_cli("adapters", "rollback", "--store", str(team_db), "--repo", TEAM, cwd=box)
        assert back.returncode == 0 and f"rolled back to {v1}" in back.stdout, back.stderr
        model = laptop_model(laptop)
        assert model.adapter_version == f"team:{v1}" and model.complete(CHAT, max_tokens=24).text == v1_text

        # a repository the team has no promoted adapter for: the team server's base, said in one line
        from learnagent.services import team as team_service
        from serve_helpers import small_repo

        other = small_repo(tmp_path / "other")
        (other / ".learnagent").mkdir()
        (other / ".learnagent" / "config.toml").write_text((laptop / ".learnagent" / "config.toml").read_text())
        with Store() as local:
            team_service.join(local, Repository.at(other), "github.com/acme/empty")
        notes: list[str] = []
        model = laptop_model(other, notes)
        assert model.engine == "serve:team" and model.adapter_version is None
        assert notes == [f"team server {server.url}: github.com/acme/empty runs on the base ({gguf_dir.name}): "
                         "the team has no promoted adapter for it yet"]
        assert model.complete(CHAT, max_tokens=24).text == in_process(gguf_dir)

        # a repository not joined keeps its own path (here: this data home's running server, no team adapter)
        from learnagent.store import team_rows

        with Store() as local:
            assert team_rows.leave(local, Repository.at(other).key)  # what `learnagent team leave` does
        assert laptop_model(other).engine == "serve:llama.cpp"

    # a bad [team] serve is one line, exit 2, before any work; a server that does not answer: one line, exit 1
    for serve_url, code, words in (("gpu-box:8000", 2, "[team] serve = 'gpu-box:8000'"),
                                   ("http://127.0.0.1:1/v1", 1, "http://127.0.0.1:1/v1 does not answer")):
        user_config(team_db, serve_url)
        out = run_cli("do", "fix the bug in add", "--no-apply", "--sandbox", "none", cwd=laptop)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == code and len(lines) == 1 and words in lines[0], out.stderr
        assert "Traceback" not in out.stdout + out.stderr


def test_serve_a_postgresql_team_store_adapters_use_hot_swaps_into_it(laptop, gguf_dir, pg_url, tmp_path):
    """On PostgreSQL: `serve --store URL --repo NAME` started after a promotion serves it; `adapters use
    --store` on the box loads the next one into the running server; the laptop's `do` model reads the
    promoted version from the team store and answers as in-process llama.cpp with that adapter."""
    from learnagent.runtime.export import served_name

    with Store(pg_url) as team:
        reg = team_registry(team)
        v1 = add_adapter(reg, gguf_dir, seed=2)
        reg.promote(v1)
        v2 = add_adapter(reg, gguf_dir, seed=3)
    box = tmp_path / "gpu-box"
    box.mkdir()
    with running_serve("--store", pg_url, "--repo", TEAM, "--model", f"local:{gguf_dir}", cwd=box,
                       log_path=tmp_path / "serve.log") as server:
        assert served_names(server) == [served_name(TEAM, v1)]
        user_config(pg_url, server.url)
        assert laptop_model(laptop).adapter_version == f"team:{v1}"
        used = run_cli("adapters", "use", v2, "--store", pg_url, "--repo", TEAM, cwd=box)
        assert used.returncode == 0 and f"now using {v2}" in used.stdout, used.stderr
        assert served_name(TEAM, v2) in served_names(server)
        reply = laptop_model(laptop).complete(CHAT, max_tokens=24)
        assert reply.extra["adapter"] == f"team:{v2}"
        assert reply.text == in_process(gguf_dir, STORED.adapters_dir / v2)
