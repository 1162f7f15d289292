"""Secret redaction (learnagent.store.redact): known formats, assignments, code left alone."""

from __future__ import annotations

import json
import site
from pathlib import Path

import pytest

from learnagent.store.redact import find_secrets, redact_text, redactor, shannon_entropy
from secret_samples import SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_secret_format_is_redacted(name):
    text, secret = SAMPLES[name]
    out = redact_text(text)
    assert secret not in out, out
    assert "[REDACTED:" in out


def test_context_around_a_secret_is_kept():
    text, secret = SAMPLES["postgres_url"]
    assert redact_text(text) == "DATABASE_URL=postgres://app:[REDACTED:password]@db.internal:5432/prod"
    text, _ = SAMPLES["aws_id"]
    assert redact_text(text) == "export AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]"
    text, _ = SAMPLES["pem"]
    out = redact_text(text)
    assert out == "key = '''[REDACTED:private_key]'''"


def test_secrets_inside_json_encoded_tool_arguments_are_redacted():
    # the store scrubs json.dumps(args): newlines are the two characters "\n" there
    for name in ("pem", "pem_truncated", "bearer_header", "aws_secret_json", "jwt"):
        text, secret = SAMPLES[name]
        encoded = json.dumps({"path": "x", "content": text})
        out = redact_text(encoded)
        assert secret not in out
        assert json.loads(out)["path"] == "x"  # still valid JSON


def test_redaction_is_idempotent_and_handles_empty_text():
    text = "\n".join(t for t, _ in SAMPLES.values())
    once = redact_text(text)
    assert redact_text(once) == once
    assert redact_text("") == ""


def test_many_secrets_in_one_text_all_go():
    text = "\n".join(t for t, _ in SAMPLES.values())
    out = redact_text(text)
    leaked = [name for name, (_t, secret) in SAMPLES.items() if secret in out]
    assert leaked == []


@pytest.mark.parametrize("line", [
    "token = self.token",
    "password = get_password(user)",
    "api_key = os.environ['OPENAI_API_KEY']",
    'secret = os.environ.get("APP_SECRET")',
    "tokenizer = AutoTokenizer.from_pretrained(path)",
    "max_tokens = 512",
    'pad_token = "<|endoftext|>"',
    "if token == self.eos_token:",
    'password_field = "password"',
    'grant_type = "client_credentials"',
    'token_type = "access_token"',
    "const apiKey = process.env.API_KEY;",
    "password: str = Field(..., description='the user password')",
    "curl -H 'Authorization: Bearer $TOKEN' https://api.example.com",
    "curl -H 'Authorization: Bearer YOUR_API_KEY' https://api.example.com",
    'url = f"postgres://{user}:{password}@{host}/db"',
    "https://user:${PASSWORD}@example.com",
    "See https://docs.python.org/3/library/re.html#re.sub for details",
    "commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "uuid = '123e4567-e89b-12d3-a456-426614174000'",
    "credentials: Base64-encoded credentials (client_id:client_secret)",
    "secret_key_base = Rails.application.credentials.secret_key_base",
])
def test_ordinary_code_is_left_alone(line):
    assert redact_text(line) == line


def test_real_installed_source_code_is_nearly_unchanged():
    """Several hundred lines of real code from the installed packages: at most 1 in 1000 lines changed."""
    files = []
    for root in (Path(p) for p in site.getsitepackages()):
        for sub in ("typer", "rich", "git", "pathspec", "networkx/algorithms"):
            files += sorted((root / sub).glob("*.py"))
    lines = changed = 0
    for path in files[:60]:
        text = path.read_text(errors="replace")
        out = redact_text(text)
        lines += text.count("\n")
        changed += sum(a != b for a, b in zip(text.splitlines(), out.splitlines()))
    assert lines > 500
    assert changed <= lines / 1000, f"{changed} of {lines} lines changed"


def test_find_secrets_spans_do_not_overlap():
    text = SAMPLES["github_oauth"][0] + " " + SAMPLES["github_pat"][0]
    spans = find_secrets(text)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_entropy_and_extra_literal_values():
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2
    scrub = redactor(["my-plain-site-password"])
    assert scrub("login with my-plain-site-password now") == "login with [REDACTED:known_secret] now"
