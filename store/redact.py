"""Secret redaction: every text the episode store writes passes through `redact_text`.

A found secret is replaced by `[REDACTED:<kind>]`, keeping the text around it (a command's
output stays readable, a URL keeps its host). Three layers, cheapest first:

1. Our own span patterns for well-known token formats (cloud keys, VCS tokens, chat webhooks,
   private key blocks, JWTs, credentials in URLs and auth headers). They find exact spans,
   which detect-secrets cannot give (it flags lines).
2. `key = value` assignments whose key names a secret (password, token, api_key, ...) and whose
   value looks random: Shannon entropy over its characters, like detect-secrets' high-entropy
   detectors, plus a check that the value is a literal and not code (`token = self.token`).
3. detect-secrets' regex plugins (formats we have no pattern for: Twilio, Square, SendGrid, ...).
   They yield the secret *value*; we replace that value wherever it occurs.

Fast path: patterns are anchored on literal prefixes so a 1 MB message costs a few
milliseconds (docs/benchmarks/redaction.md). Redaction is idempotent: the marker itself
never matches a pattern.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Callable, Iterable

MARK = "[REDACTED:{}]"
_MARK_RE = re.compile(r"\[REDACTED:[a-z0-9_]+\]")

# ---- 1. known formats: (kind, regex, group to replace (0 = whole match)) ------------------------

_B64 = r"A-Za-z0-9+/="
# Each pattern comes with needles: literal strings one of which must occur in the text for the
# pattern to possibly match. `needle in text` is a memchr-speed scan, while a regex starting with
# \b or an alternation is tried at every position (about 20 ms per MB each).
_SPAN_PATTERNS: list[tuple[str, re.Pattern, int, tuple[str, ...]]] = [
    # PEM private keys, with or without their END line (output may be cut off); inside JSON
    # (tool-call args) the newlines are the two characters `\n`, hence `\\[nr]`.
    ("private_key", re.compile(
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|(?:[A-Za-z0-9+/=:,. \t\r\n-]|\\[nr])*)"), 0,
     ("PRIVATE KEY",)),
    ("aws_access_key_id", re.compile(r"A(?<![A-Z0-9]A)(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|"
                                     r"PKA)[A-Z0-9]{16}(?![A-Z0-9])"), 0,
     ("A3T", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA")),
    # a 40-character secret key needs context: an aws_secret... name within a few characters
    ("aws_secret_access_key", re.compile(
        r"(?i)aws.{0,20}?(?:secret|key|token).{0,20}?[:=>\s][\s\"'\\]*([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"), 1,
     ("aws", "AWS", "Aws")),
    ("github_token", re.compile(r"gh(?<![A-Za-z0-9_]gh)[pousr]_[A-Za-z0-9_]{36,255}\b"), 0,
     ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("github_token", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}\b"), 0, ("github_pat_",)),
    ("gitlab_token", re.compile(r"gl(?<![A-Za-z0-9_]gl)(?:pat|dt|rt|ptt|ft|cbt|oas|soat|imt|agent|ffct)-"
                                r"[A-Za-z0-9_-]{20,}"), 0, ("gl",)),
    ("slack_token", re.compile(r"xox[abposre]-[A-Za-z0-9-]{10,}"), 0, ("xox",)),
    ("slack_token", re.compile(r"xapp-\d-[A-Za-z0-9-]{10,}"), 0, ("xapp-",)),
    ("slack_webhook", re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{8,}"),
     0, ("hooks.slack.com",)),
    ("discord_webhook", re.compile(r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/"
                                   r"[A-Za-z0-9_-]{20,}"), 0, ("/api/webhooks/",)),
    ("anthropic_key", re.compile(r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{32,}"), 0,
     ("sk-ant-",)),
    ("openai_key", re.compile(r"sk-(?<![A-Za-z0-9_-]sk-)(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}"), 0, ("sk-",)),
    ("openai_key", re.compile(r"sk-(?<![A-Za-z0-9_-]sk-)[A-Za-z0-9]{32,}\b"), 0, ("sk-",)),
    ("google_api_key", re.compile(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), 0, ("AIza",)),
    ("google_oauth_secret", re.compile(r"GOCSPX-[A-Za-z0-9_-]{20,}"), 0, ("GOCSPX-",)),
    ("stripe_key", re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[0-9A-Za-z]{16,}\b"), 0,
     ("k_live_", "k_test_")),
    ("stripe_key", re.compile(r"whsec_[0-9A-Za-z]{24,}\b"), 0, ("whsec_",)),
    ("huggingface_token", re.compile(r"hf_(?<![A-Za-z0-9_]hf_)[A-Za-z0-9]{30,}\b"), 0, ("hf_",)),
    ("npm_token", re.compile(r"npm_(?<![A-Za-z0-9_]npm_)[A-Za-z0-9]{36}\b"), 0, ("npm_",)),
    # .npmrc: `//registry.npmjs.org/:_authToken=...` or a line `_auth = base64`
    ("npm_token", re.compile(r"(?:^|:)_auth(?:Token)?[ \t]*=[ \t]*([^\s\"'\\]{8,})", re.M), 1, ("_auth",)),
    ("pypi_token", re.compile(r"pypi-AgE[A-Za-z0-9_-]{50,}"), 0, ("pypi-AgE",)),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), 0, ("eyJ",)),
    # scheme://user:PASSWORD@host -- keep the scheme, the user and the host. Values that are
    # template holes ({password}, $PASS, %s, <pass>, ***) are code, not secrets.
    ("password", re.compile(r"://[^\s:/@\"'`<>]{1,128}:(?![{$%<*])([^\s@/\"'`<>]{1,256})@(?=[A-Za-z0-9\[])"), 1,
     ("://",)),
    ("basic_auth", re.compile(rf"uthorization\\?[\"']?\s*[:=]\s*\\?[\"']?(?i:Basic)\s+([{_B64}]{{8,}})", re.I), 1,
     ("uthorization", "UTHORIZATION")),
    ("bearer_token", re.compile(r"(?i)Authorization\\?[\"']?\s*[:=]\s*\\?[\"']?(?:Bearer|token)\s+"
                                r"(?![{$<])([A-Za-z0-9._~+/=-]{16,})"), 1, ("uthorization", "UTHORIZATION")),
    # the bot id before ':' is public; the 35 characters after it are the secret
    ("telegram_bot_token", re.compile(r":(?<=[0-9]{8}:)([0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])"), 1, (":",)),
    # user id (base64) . timestamp . HMAC -- anchored on the first dot, which literal-prefix scans find fast
    ("discord_bot_token", re.compile(r"\.(?<=[MNO][a-zA-Z0-9_-]{23}\.)([a-zA-Z0-9_-]{6}\.[a-zA-Z0-9_-]{27})"
                                     r"(?![a-zA-Z0-9_-])"), 1, (".",)),
    ("azure_storage_key", re.compile(rf"AccountKey=([{_B64}]{{40,}})"), 1, ("AccountKey=",)),
]

# ---- 2. secret-named assignments with random-looking values ---------------------------------------

# The key must END with a secret word (`client_secret`, `dbPassword`, `API_TOKEN`, `secret_key`), so
# `tokenizer = ...` and `max_tokens = ...` are not keys. Case-insensitive regexes that start with an
# alternation are slow (150 ms per MB), so the words are found with str.find on an ASCII-lowered copy
# and the rest (assignment, quote, value) is matched from there with `_ASSIGN_TAIL`.
_SECRET_WORDS = ("password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "api_key", "api-key",
                 "access_key", "accesskey", "private_key", "privatekey", "auth_key", "authkey", "credential",
                 "credentials", "signing_key", "encryption_key")
_ASSIGN_TAIL = re.compile(
    r"(?:[_-]?(?i:key|value|str))?(?![A-Za-z0-9])\\?[\"'\]]?[ \t]*(?:=|:=|:|=>)[ \t]*\\?([\"'`]?)"
    r"([^\s\"'`<>(){}\[\],;|\\]{8,256}+)\\?\1(?!\()")  # possessive, so `x = call(` is not cut to `cal`
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _assignments(text: str, lower: str):
    """(value start, value end, quoted, secret word) of every `<...secret word> = <value>`."""
    for word in _SECRET_WORDS:
        pos = lower.find(word)
        while pos != -1:
            m = _ASSIGN_TAIL.match(text, pos + len(word))
            if m:
                yield m.start(2), m.end(2), bool(m.group(1)), word
            pos = lower.find(word, pos + len(word))


ENTROPY_LIMIT = 3.0  # bits per character; detect-secrets uses 3.0 for hex and 4.5 for unquoted base64
_WORD_SEP = re.compile(r"[_.\-]")
# a word: lower, UPPER or Title letters with at most a short number after them (s3, v2, Base64)
_WORD = re.compile(r"^(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)[0-9]{0,3}$|^[0-9]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _is_placeholder(value: str) -> bool:
    """`Bearer $TOKEN`, `Bearer YOUR_API_KEY`, `user:PASSWORD@`: documentation, not a secret."""
    return value.startswith(("$", "%", "{", "<")) or (value.isupper() and _IDENT.match(value) is not None)


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _char_classes(value: str) -> int:
    return sum((any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value),
                any(not c.isalnum() and c not in "_-." for c in value)))


def looks_random(value: str, quoted: bool) -> bool:
    """A literal that reads like a credential, not like code or prose."""
    if _MARK_RE.search(value) or value.startswith(("$", "%", "os.", "env.", "process.env")):
        return False
    if shannon_entropy(value) < ENTROPY_LIMIT:
        return False
    if not quoted and _IDENT.match(value) and not any(c.isdigit() for c in value):
        return False  # `token = self.token`, `password=password_field` -- code
    if "?." in value or "??" in value or _IDENT.match(value.rstrip("?!:")) and "." in value:
        return False  # dotted attribute chains: settings.SECRET_KEY
    if all(not seg or _WORD.match(seg) for seg in _WORD_SEP.split(value)):
        return False  # words: snake_case / kebab-case / an env variable's NAME / "Base64-encoded"
    return _char_classes(value) >= 2 or len(value) >= 20


# ---- 3. detect-secrets regex plugins --------------------------------------------------------------

# Plugins whose formats we cover ourselves or that flag non-secrets (public IPs, any keyword,
# any quoted high-entropy string) are left out: they would mangle ordinary code.
_DS_SKIP = {"KeywordDetector", "IPPublicDetector", "Base64HighEntropyString", "HexHighEntropyString",
            "BasicAuthDetector", "PrivateKeyDetector", "ArtifactoryDetector", "SoftlayerDetector",
            "CloudantDetector", "IbmCloudIamDetector", "IbmCosHmacDetector",
            # covered by our span patterns above (faster, and they give exact spans)
            "AWSKeyDetector", "GitHubTokenDetector", "GitLabTokenDetector", "JwtTokenDetector", "NpmDetector",
            "OpenAIDetector", "PypiTokenDetector", "SlackDetector", "StripeDetector", "AzureStorageKeyDetector",
            "TelegramBotTokenDetector", "DiscordBotTokenDetector"}


# needles per plugin (see _SPAN_PATTERNS); a plugin without an entry always runs
_DS_NEEDLES = {"MailchimpDetector": ("-us",), "SendGridDetector": ("SG.",), "SquareOAuthDetector": ("sq0",),
               "TwilioKeyDetector": ("AC", "SK")}


@lru_cache(maxsize=1)
def _detect_secrets_plugins() -> list[tuple[str, object, tuple[str, ...]]]:
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:  # detect-secrets is a dependency, but redaction must never fail to import
        return []
    out = []
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items()):
        if cls.__name__ in _DS_SKIP or not hasattr(cls, "denylist"):
            continue
        try:
            plugin = cls()
        except TypeError:
            continue
        kind = re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")
        out.append((kind, plugin, _DS_NEEDLES.get(cls.__name__, ("",))))
    return out


# ---- the entry point ---------------------------------------------------------------------------------

def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) spans of every secret in `text`, overlapping spans merged."""
    spans: list[tuple[int, int, str]] = []
    for kind, pattern, group, needles in _SPAN_PATTERNS:
        if not any(n in text for n in needles):
            continue
        for m in pattern.finditer(text):
            value = m.group(group)
            if value and not (group and _is_placeholder(value)):
                spans.append((m.start(group), m.end(group), kind))
    lower = text.lower()
    if len(lower) != len(text):  # a few non-ASCII letters lower to two characters (İ); keep offsets
        lower = text.translate(_ASCII_LOWER)
    for start, end, quoted, word in _assignments(text, lower):
        if looks_random(text[start:end], quoted):
            spans.append((start, end, _assign_kind(word)))
    for kind, plugin, needles in _detect_secrets_plugins():
        if not any(n in text for n in needles):
            continue
        for value in set(_plugin_values(plugin, text)):
            if len(value) < 12 or _MARK_RE.search(value):
                continue  # short values would blank out unrelated text wherever they occur
            start = text.find(value)
            while start != -1:
                spans.append((start, start + len(value), kind))
                start = text.find(value, start + len(value))
    return _merge(spans)


def _plugin_values(plugin, text: str) -> Iterable[str]:
    try:
        yield from plugin.analyze_string(text)
    except Exception:  # a plugin bug must not stop an episode from being recorded
        return


def _assign_kind(key: str) -> str:
    k = key.lower()
    for word, kind in (("pass", "password"), ("pwd", "password"), ("token", "token"), ("secret", "secret"),
                       ("key", "api_key"), ("credential", "credential")):
        if word in k:
            return kind
    return "secret"


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, kind))
    return merged


def redact_text(text: str) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]`."""
    if not text:
        return text
    spans = find_secrets(text)
    if not spans:
        return text
    parts, pos = [], 0
    for start, end, kind in spans:
        parts.append(text[pos:start])
        parts.append(MARK.format(kind))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def redactor(extra: Iterable[str] = ()) -> Callable[[str], str]:
    """A redactor that also blanks the given literal values (e.g. secrets known from the environment)."""
    literals = sorted({v for v in extra if v and len(v) >= 8}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for value in literals:
            text = text.replace(value, MARK.format("known_secret"))
        return redact_text(text)
    return scrub
