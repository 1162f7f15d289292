"""Secret redaction (learnagent.store.redact): known formats, assignments, code left alone."""

from __future__ import annotations

import json
import site
from pathlib import Path

import pytest

from learnagent.store.redact import commit_subject, find_secrets, redact_text, redactor, shannon_entropy
from secret_samples import KEY_LINES, NOT_SECRETS, SAMPLES


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
    for name in ("pem", "pem_truncated", "bearer_header", "aws_secret_json", "jwt", "key_body_sed", "key_body_read",
                 "db_pass_env_bare", "db_pass_compose", "db_pass_yaml", "docker_auth", "cookie_header", "mysql_p"):
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


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_secret_named_text_without_a_secret_is_left_alone(text):
    assert redact_text(text) == text


def test_env_output_keeps_the_working_directory_and_loses_the_token():
    text, secret = SAMPLES["env_output_token"]
    assert redact_text(text) == "HOME=/root\nDEPLOY_TOKEN=[REDACTED:token]\nPWD=/srv/app"


def test_key_body_lines_keep_the_surrounding_output():
    text, _ = SAMPLES["key_body_read"]
    out = redact_text(text)
    assert out.splitlines()[0] == "deploy_key (28 lines)"
    assert out.splitlines()[1] == "    2 [REDACTED:private_key]"
    assert out.endswith("   11 -----END RSA PRIVATE KEY-----")
    text, _ = SAMPLES["key_body_sed"]
    assert redact_text(text) == "$ sed -n 3,11p deploy_key\n[REDACTED:private_key]\n$ "


def test_a_single_base64_line_is_not_taken_for_a_key():
    """Documented limit: one line alone (`sed -n 5p key`) is 48 bytes of the key and looks like any base64
    value; two lines, or one with the padded last line, are redacted."""
    assert redact_text(KEY_LINES[3]) == KEY_LINES[3]
    assert KEY_LINES[3] not in redact_text(KEY_LINES[3] + "\n" + KEY_LINES[4])
    assert KEY_LINES[7] not in redact_text(KEY_LINES[7] + "\n" + KEY_LINES[8])


def test_set_cookie_attributes_stay_readable():
    text, _ = SAMPLES["set_cookie"]
    assert redact_text(text) == "< Set-Cookie: remember_token=[REDACTED:cookie]; Path=/; HttpOnly; Secure"


def test_commit_subject_is_one_redacted_line():
    password = SAMPLES["redis_url"][1]
    assert commit_subject(f"use redis://:{password}@cache:6379 for sessions\nand more") == \
        "use redis://:[REDACTED:password]@cache:6379 for sessions"
    # the secret sits across the cut: it is gone, not cut into a shorter piece the patterns miss
    secret = SAMPLES["db_pass_env_bare"][1]
    subject = commit_subject("x" * 60 + f" DB_PASS={secret}", limit=72)
    assert len(subject) <= 72 and subject.endswith("…")
    assert secret[:5] not in subject
    # a key pasted as the task: its BEGIN line is the first line, its body the rest
    text, body_line = SAMPLES["openssh"]
    assert commit_subject(text.split("\n", 1)[1]) == "[REDACTED:private_key]"
    # control characters (terminal escapes, bidi overrides) and blank first lines go
    assert commit_subject("\n\n  fix \x1b[31mthe\x1b[0m bug\u202e  ") == "fix [31mthe [0m bug"
    assert commit_subject("") == ""


@pytest.mark.parametrize("form", ["json", "diff"])
def test_every_format_is_redacted_inside_json_and_in_a_diff(form):
    """The store scrubs json.dumps(tool arguments) (newlines are the two characters `\\n`) and the final diff
    (every line behind a +/- column); a secret must go in both forms, and text without one must stay."""
    def encode(text: str) -> str:
        return json.dumps({"content": text}) if form == "json" else "+" + text.replace("\n", "\n+")

    leaked = [name for name, (text, secret) in SAMPLES.items() if secret in redact_text(encode(text))]
    assert leaked == []
    changed = [text for text in NOT_SECRETS if redact_text(encode(text)) != encode(text)]
    assert changed == []
