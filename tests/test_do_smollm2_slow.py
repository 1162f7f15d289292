"""A real `learnagent do` step with the installed SmolLM2-135M (slow: real generation on CPU)."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from learnagent.core.modelhub import installed_default_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(installed_default_path() is None,
                       reason="SmolLM2 is not installed (run `learnagent model install`)"),
]


def test_real_do_step_with_smollm2(git_repo):
    assert run_cli("init", "--no-hooks", cwd=git_repo).returncode == 0
    cfg = git_repo / ".learnagent" / "config.toml"
    text = cfg.read_text().replace("# max_response_tokens = 512", "max_response_tokens = 48")  # init comments defaults
    assert "\nmax_response_tokens = 48\n" in text
    cfg.write_text(text)
    out = run_cli("do", "Add a function sub(a, b) to calc.py that returns a - b", "--max-steps", "2",
                  "--no-apply", "--json", cwd=git_repo, timeout=900)
    assert out.returncode in (0, 1, 3), out.stderr  # finished, tests failed, or out of steps: all real outcomes
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ep = json.loads(run_cli("show", result["episode"], "--json", cwd=git_repo).stdout)
    assert ep["model"] == "local:smollm2-135m-instruct"
    assert ep["adapter_version"] is None
    assert 1 <= len(ep["model_calls"]) <= 2
    call = ep["model_calls"][0]
    assert call["engine"] in ("transformers", "llama.cpp") and call["adapter_version"] is None
    assert call["stop_reason"] in ("reply_complete", "eos", "max_tokens")
    assert call["prompt_tokens"] > 100 and 0 < call["completion_tokens"] <= 49  # 48 + the stop token
    first_reply = ep["messages"][call["response_seq"]]
    assert first_reply["role"] == "assistant" and first_reply["content"].strip()
    assert ep["tool_calls"], "every step is recorded as an action or a format error shown to the model"
    assert ep["test_runs"] and ep["test_runs"][-1]["phase"] == "final"
    # the user's tree is untouched (--no-apply)
    assert (git_repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
