"""The litellm backend against a real OpenAI-compatible HTTP server on loopback (no network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from learnagent.runtime.engine_litellm import LiteLLMModel
from learnagent.core.errors import LearnagentError

REPLY = 'I will read it.\n<read path="calc.py"/>'


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
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [REPLY[:10], REPLY[10:25], REPLY[25:]]
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


@pytest.fixture
def server(monkeypatch):
    _Handler.requests = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
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
    assert len(seen) == 3
    assert _Handler.requests[-1]["body"]["stream"] is True
    assert out.completion_tokens == 7


def test_provider_error_is_one_line(server):
    model = LiteLLMModel("openai/my-vllm-model", api_base=server)
    with pytest.raises(LearnagentError) as err:
        model.complete([{"role": "user", "content": "fail please"}], max_tokens=8)
    assert "litellm:openai/my-vllm-model" in str(err.value) and "\n" not in str(err.value)
