"""The litellm backend against a real OpenAI-compatible HTTP server on loopback (no network)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from learnagent.runtime.engine_litellm import LiteLLMModel
from learnagent.core.errors import LearnagentError
from learnagent.core.repository import Repository

REPLY = 'I will read it.\n<read path="calc.py"/>'
# replies by the last user message; the server honours `stop` as OpenAI's API does (cut before the
# first stop sequence, which is not returned) unless the message says it ignores them
REPLIES = {"run the tests": "I will run them.\n<run>pytest -q</run>\n<finish>done</finish>\n```\n```",
           "ignore stops": '<read path="a.py"/>\n<finish>done</finish>\n' + "``` " * 50}


class _Handler(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if body["messages"][-1]["content"] == "fail please":
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom", "type": "server_error"}}')
            return
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        last = body["messages"][-1]["content"]
        reply = REPLIES.get(last, REPLY)
        if last != "ignore stops":
            for stop in body.get("stop") or []:
                reply = reply.split(stop)[0]
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [reply[:10], reply[10:25]] + [reply[i:i + 5] for i in range(25, len(reply), 5)]
            for i, piece in enumerate(pieces):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0
                                      else {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            final = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
            self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            return
        payload = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                                "finish_reason": "stop"}], "usage": usage}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that stops reading a stream early (the cut after the first action) closes the
        socket under the handler: expected here, so not printed as a server error."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server(monkeypatch):
    _Handler.requests = []
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "read calc.py"}]


def test_complete_through_litellm(server):
    model = LiteLLMModel("openai/my-vllm-model", api_base=server)
    out = model.complete(MESSAGES, max_tokens=64)
    assert out.text == REPLY
    assert (out.prompt_tokens, out.completion_tokens) == (11, 7)
    sent = _Handler.requests[-1]
    assert sent["path"].endswith("/chat/completions")
    assert sent["body"]["model"] == "my-vllm-model" and sent["body"]["max_tokens"] == 64
    assert sent["body"]["messages"] == MESSAGES
    assert model.name == "litellm:openai/my-vllm-model" and model.adapter_version is None


def test_streaming_sends_text_as_it_arrives(server):
    model = LiteLLMModel("openai/my-vllm-model", api_base=server)
    seen = []
    out = model.complete(MESSAGES, max_tokens=64, on_text=seen.append)
    assert "".join(seen) == REPLY == out.text
    assert seen[:2] == [REPLY[:10], REPLY[10:25]] and len(seen) == 5  # as the server sent them
    assert _Handler.requests[-1]["body"]["stream"] is True
    assert out.completion_tokens == 7


def test_provider_error_is_one_line(server):
    model = LiteLLMModel("openai/my-vllm-model", api_base=server)
    with pytest.raises(LearnagentError) as err:
        model.complete([{"role": "user", "content": "fail please"}], max_tokens=8)
    assert "litellm:openai/my-vllm-model" in str(err.value) and "\n" not in str(err.value)


def test_stop_sequences_are_sent_and_the_dropped_closing_tag_is_put_back(server):
    from learnagent.agent.actions import STOP_SEQUENCES, parse_action, reply_format

    model = LiteLLMModel("openai/my-vllm-model", api_base=server, reply_format=reply_format())
    seen = []
    out = model.complete([{"role": "user", "content": "run the tests"}], max_tokens=64, on_text=seen.append)
    assert _Handler.requests[-1]["body"]["stop"] == list(STOP_SEQUENCES)
    assert out.text == "I will run them.\n<run>pytest -q</run>" == "".join(seen)
    assert out.extra["stop_reason"] == "stop_sequence" and out.extra["engine"] == "litellm"
    assert parse_action(out.text).body == "pytest -q"


def test_a_server_that_ignores_stop_sequences_is_cut_after_the_first_action(server):
    from learnagent.agent.actions import reply_format

    model = LiteLLMModel("openai/my-vllm-model", api_base=server, reply_format=reply_format())
    seen = []
    out = model.complete([{"role": "user", "content": "ignore stops"}], max_tokens=256, on_text=seen.append)
    assert out.text == '<read path="a.py"/>' == "".join(seen)
    assert out.extra["stop_reason"] == "reply_complete"


def test_the_model_name_is_asked_before_every_request(server):
    """What `serve` users get: the promoted adapter's name is read at each call, so a promotion
    or a rollback takes effect at the next step."""
    current = ["learnagent-v0001", "v0001"]
    model = LiteLLMModel("openai/base", api_base=server, model_for_request=lambda: ("openai/" + current[0], current[1]))
    assert model.adapter_version == "v0001"
    model.complete(MESSAGES, max_tokens=8)
    assert _Handler.requests[-1]["body"]["model"] == "learnagent-v0001"
    current[:] = ["learnagent-v0002", "v0002"]
    out = model.complete(MESSAGES, max_tokens=8)
    assert _Handler.requests[-1]["body"]["model"] == "learnagent-v0002"
    assert model.adapter_version == "v0002" and out.extra["request_model"] == "openai/learnagent-v0002"


def test_served_adapters_follow_promotion_and_rollback_without_a_restart(server, git_repo, monkeypatch):
    """`[model] served_adapters`: every request names the repository's promoted adapter as the
    server knows it (runtime.export.served_name); `sleep`'s promotion and `adapters rollback` are
    seen by the next request of the same model object."""
    from learnagent.core.config import ModelConfig
    from learnagent.core.repository import Repository
    from learnagent.learning.registry import Registry
    from learnagent.services.run_task import open_model
    from learnagent.store.episodes import Store

    monkeypatch.setenv("LEARNAGENT_API_BASE", server)
    repo = Repository.at(git_repo)
    model = open_model(ModelConfig(name="litellm:openai/smollm2", served_adapters=True), repo)
    key = repo.key

    def sent():
        model.complete(MESSAGES, max_tokens=8)
        return _Handler.requests[-1]["body"]["model"]

    assert sent() == "smollm2" and model.adapter_version is None  # nothing promoted yet: the base
    with Store() as store:
        reg = Registry(store, Repository.at(git_repo))
        for _ in range(2):
            version = reg.reserve(parent=None, method="opsd", base_model="smollm2")
            reg.folder(version).mkdir(parents=True, exist_ok=True)
            (reg.folder(version) / "adapter_config.json").write_text("{}")
            reg.finish(version, metrics={}, episode_ids=[], config={})
            reg.promote(version)
            assert sent() == f"learnagent-{key}-{version}" and model.adapter_version == version
        reg.rollback()
    out = model.complete(MESSAGES, max_tokens=8)
    assert _Handler.requests[-1]["body"]["model"] == f"learnagent-{key}-v0001"
    assert out.extra["adapter"] == "v0001" and model.adapter_version == "v0001"
    # without the setting, the configured name is sent whatever is promoted
    plain = open_model(ModelConfig(name="litellm:openai/smollm2"), repo)
    plain.complete(MESSAGES, max_tokens=8)
    assert _Handler.requests[-1]["body"]["model"] == "smollm2"
