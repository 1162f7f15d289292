"""`learnagent serve` on loopback: a real llama.cpp server (llama-cpp-python's, under uvicorn) for the
tiny model's F32 GGUF with the repository's adapters as GGUF LoRAs, reached through litellm.

What is checked: a served reply equals the in-process llama.cpp engine's reply on the same model,
adapter and messages, for the base and for an adapter (and the two differ); `sleep`'s promotion
loads a new adapter into the running server (same process) and the next request of the same model
object gets it; a rollback gets the old one back; `do` run through the server records the served
engine and adapter and writes what the in-process engine writes.

Skipped where llama-cpp-python's server is not installed, except when LEARNAGENT_REQUIRE_LLAMA=1
(CI with the llama option sets it), so CI cannot pass by skipping.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from learnagent.core.repository import Repository

if os.environ.get("LEARNAGENT_REQUIRE_LLAMA") != "1":
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        pytest.importorskip(module, reason="llama-cpp-python[server] (learnagent[llama]) is not installed")

from cli_helpers import run_cli  # noqa: E402

CHAT = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Fix the bug in add()."}]


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory):
    from tiny_gguf import make_gguf_model_dir

    return make_gguf_model_dir(tmp_path_factory.mktemp("served") / "model", seed=5)


@pytest.fixture
def repo(git_repo, gguf_dir):
    (git_repo / ".learnagent").mkdir(exist_ok=True)
    (git_repo / ".learnagent" / "config.toml").write_text(
        f'[model]\nname = "local:{gguf_dir}"\ngrammar = false\nmax_response_tokens = 24\n\n[budgets]\nmax_steps = 1\n')
    return git_repo


@pytest.fixture
def server(repo, tmp_path):
    """`learnagent serve` in a child process, until the test ends (stopped with Ctrl-C's signal)."""
    from serve_helpers import running_serve

    with running_serve(cwd=repo, log_path=tmp_path / "serve.log") as info:
        yield info


def add_adapter(reg, gguf_dir, seed: int) -> str:
    from tiny_model import make_adapter

    version = reg.reserve(parent=None, method="opsd", base_model=f"local:{gguf_dir}")
    make_adapter(gguf_dir, reg.folder(version), seed=seed)
    reg.finish(version, metrics={}, episode_ids=[], config={})
    return version


def in_process(gguf_dir, adapter_dir=None) -> str:
    from learnagent.agent.actions import reply_format
    from learnagent.runtime.engine_llamacpp import LlamaCppModel

    model = LlamaCppModel(gguf_dir, adapter_path=adapter_dir, n_threads=1, constrain=False, reply_format=reply_format())
    return model.complete(CHAT, max_tokens=24).text


def served_names(info) -> list[str]:
    with urllib.request.urlopen(f"{info.root}/learnagent/adapters", timeout=30) as r:
        return json.loads(r.read())["adapters"]


def test_served_replies_equal_in_process_promotion_and_rollback_hot_swap_unknown_names_404(repo, gguf_dir, server):
    from learnagent.core.repository import find_repository
    from learnagent.services.run_task import open_model
    from learnagent.core.config import load_config
    from learnagent.learning.registry import Registry
    from learnagent.runtime import serving
    from learnagent.store.episodes import Store

    cfg = load_config(repo).model
    model = open_model(cfg, find_repository(repo))  # the running server is picked by engine = auto
    assert model.engine == "serve:llama.cpp" and model.api_base == server.url and model.adapter_version is None
    base_text = model.complete(CHAT, max_tokens=24).text
    assert base_text == in_process(gguf_dir)

    key = Repository.at(repo).key
    with Store() as store:
        reg = Registry(store, Repository.at(repo))
        v1 = add_adapter(reg, gguf_dir, seed=2)
        reg.promote(v1)  # the registry's hook loads it into the running server first
        assert served_names(server) == [f"learnagent-{key}-{v1}"]
        out = model.complete(CHAT, max_tokens=24)  # the same model object: no restart of anything
        v1_text = in_process(gguf_dir, reg.folder(v1))
        assert out.extra["adapter"] == v1 and out.extra["request_model"] == f"openai/learnagent-{key}-{v1}"
        assert out.text == v1_text != base_text

        v2 = add_adapter(reg, gguf_dir, seed=3)
        reg.promote(v2)
        out = model.complete(CHAT, max_tokens=24)
        assert out.extra["adapter"] == v2 and out.text == in_process(gguf_dir, reg.folder(v2)) != v1_text

        assert reg.rollback() == v1
        out = model.complete(CHAT, max_tokens=24)
        assert out.extra["adapter"] == v1 and out.text == v1_text
        assert reg.rollback() is None  # back to the base model
        assert model.complete(CHAT, max_tokens=24).text == base_text
    assert serving.running().pid == server.pid  # one server process throughout
    # a name the server does not hold is refused, not answered by the base
    request = urllib.request.Request(f"{server.url}/chat/completions", method="POST",
                                     headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": "learnagent-nope-v0009", "messages": CHAT,
                                                      "max_tokens": 4}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 404 and "does not exist" in err.value.read().decode()


@pytest.fixture
def promoted(repo, gguf_dir) -> str:
    """An adapter promoted before any server runs (the hook has nothing to load it into)."""
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store

    with Store() as store:
        reg = Registry(store, Repository.at(repo))
        version = add_adapter(reg, gguf_dir, seed=2)
        reg.promote(version)
    return version


@pytest.fixture
def other_repo(tmp_path, gguf_dir):
    """A second repository on the same base, its adapter promoted before the server starts."""
    from learnagent.learning.registry import Registry
    from learnagent.store.episodes import Store
    from serve_helpers import small_repo

    other = small_repo(tmp_path / "other")
    with Store() as store:
        reg = Registry(store, Repository.at(other))
        reg.promote(add_adapter(reg, gguf_dir, seed=7))
    return other


def test_do_through_the_server_uses_the_adapter_as_in_process(repo, gguf_dir, promoted, other_repo, server):
    """A server started after the promotion holds the promoted adapter; `do` (a real CLI run) while
    it is up sends its model call there with that adapter, and writes exactly what `do` with the
    in-process llama.cpp engine writes. One server, many repositories: another repository's adapter,
    promoted before the server started, is loaded when that repository's model is made."""
    from learnagent.core.repository import find_repository
    from learnagent.services.run_task import open_model
    from learnagent.core.config import load_config
    from learnagent.learning.registry import promoted_adapter

    version = promoted
    assert served_names(server) == [f"learnagent-{Repository.at(repo).key}-{version}"]
    other_version, other_folder = promoted_adapter(Repository.at(other_repo))
    other = open_model(load_config(repo).model, find_repository(other_repo))
    assert f"learnagent-{Repository.at(other_repo).key}-{other_version}" in served_names(server)
    out = other.complete(CHAT, max_tokens=24)
    assert out.extra["adapter"] == other_version and out.text == in_process(gguf_dir, other_folder)

    def first_reply(*extra: str) -> tuple[dict, str]:
        out = run_cli("do", "fix the bug in add", "--no-apply", "--json", "--sandbox", "none", *extra, cwd=repo,
                      timeout=300)
        assert out.returncode in (0, 1, 3), out.stderr + out.stdout  # 3: the one-step budget ran out
        eid = json.loads(out.stdout.strip().splitlines()[-1])["episode"]
        ep = json.loads(run_cli("show", eid, "--json", cwd=repo).stdout)
        call = ep["model_calls"][0]
        reply = next(m["content"] for m in ep["messages"] if m["seq"] == call["response_seq"])
        return call, reply

    served_call, served = first_reply()
    assert served_call["engine"] == "serve:llama.cpp" and served_call["adapter_version"] == version
    assert 0 < served_call["completion_tokens"] <= 24  # counted with the base's tokenizer (no usage streamed)
    cfg = (repo / ".learnagent" / "config.toml").read_text()
    (repo / ".learnagent" / "config.toml").write_text(cfg.replace("[model]\n", '[model]\nengine = "llama.cpp"\n'))
    local_call, local = first_reply()
    assert local_call["engine"] == "llama.cpp" and local_call["adapter_version"] == version
    assert served == local
