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
    # The user may be empty: `redis://:PASSWORD@host`.
    ("password", re.compile(r"://[^\s:/@\"'`<>]{0,128}:(?![{$%<*])([^\s@/\"'`<>]{1,256})@(?=[A-Za-z0-9\[])"), 1,
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
    # command-line passwords: `mysql -uroot -pPASSWORD` (mysql's -p takes its value without a space),
    # `sshpass -p PASSWORD`, `openssl ... -passin pass:PASSWORD`
    ("password", re.compile(r"(?:mysql[a-z]*|mariadb[a-z-]*)\b[^\n|;&]{0,400}?[ \t]-p(?![ \t\n])\\?([\"']?)"
                            r"(?![$<{])([^\s\"'\\]{1,256})\\?\1"), 2, ("mysql", "mariadb")),
    ("password", re.compile(r"sshpass[ \t]+-p[ \t]*([\"']?)(?![$<{])([^\s\"'\\]{1,256})\1"), 2, ("sshpass",)),
    ("password", re.compile(r"-pass(?:in|out)?[ \t]+pass:([^\s\"'\\]{1,256})"), 1, ("pass:",)),
    # `--password=VALUE`, `--db-password VALUE`, `--api-key VALUE`, `--token=VALUE`
    ("password", re.compile(r"--(?:[a-z0-9]+-)*(?:password|passwd|pass|passphrase|pwd|token|secret|api-?key)"
                            r"(?:=|[ \t]+)\\?([\"']?)(?![-$<{%*])([^\s\"'\\]{1,256})\\?\1"), 2, ("--",)),
    # docker's config.json (base64 of user:password) and similar `"auth": "..."` values
    ("auth", re.compile(r"auth\\?[\"'][ \t]*:[ \t]*\\?[\"']([A-Za-z0-9+/=_.:-]{8,512})\\?[\"']"), 1,
     ('auth"', "auth'", 'auth\\"')),
]

# ---- 1b. private-key bodies without their BEGIN line -------------------------------------------------

# A ranged read (`sed -n 5,20p key.pem`, `<read start=...>`, `tail`) shows a key's base64 lines without the
# BEGIN line that the private_key pattern anchors on. Consecutive lines of exactly 64 (PEM), 70 (OpenSSH)
# or 76 (MIME) base64 characters, each maybe after a line number (`<read>`, `cat -n`, `grep -n`), are key
# material: two or more of them, or one followed by a padded last line. Lines of a certificate or public
# key (its BEGIN line just above) are left alone.
_B64_TABLE = bytes(97 if 48 <= i <= 57 or 65 <= i <= 90 or 97 <= i <= 122 or i in (43, 47) else 32
                   for i in range(256))
_B64_RUN = b"a" * 64  # found in the text mapped through _B64_TABLE: one byte per character
_NL = r"(?:\r?\n|(?:\\r)?\\n)"
_LINE_END = rf"{_NL}|$|\\?[\"'`]"  # a newline, the end, or the closing quote of a string
# a diff's +/- column, then a line number (`<read>`, `cat -n`, `grep -n`)
_LINE_NO = r"[+\-]?(?:[ \t]*\d{1,9}(?::|\t|\\t| )[ \t]?)?"
_FULL = r"(?:[A-Za-z0-9+/]{76}|[A-Za-z0-9+/]{70}|[A-Za-z0-9+/]{64})"
_FULL_LINE = re.compile(rf"{_LINE_NO}({_FULL})[ \t]*(?={_LINE_END})")
_LAST_LINE = re.compile(rf"{_LINE_NO}([A-Za-z0-9+/]{{1,75}}={{0,2}})[ \t]*(?={_LINE_END})")
_NEWLINE = re.compile(_NL)
_PUBLIC_BEGIN = re.compile(r"-----BEGIN (?![A-Z ]*PRIVATE)[A-Z0-9 ]+-----[ \t]*(?:\r?\n|(?:\\r)?\\n)$")


def _key_body_at(text: str, start: int) -> tuple[int, int, bool] | None:
    """(start, end, is a private key) of the block of base64 lines from `start`, or None when there is none."""
    full: list[re.Match] = []
    pos, last = start, None
    while (m := _FULL_LINE.match(text, pos)) is not None:
        full.append(m)
        nl = _NEWLINE.match(text, m.end())
        if nl is None:
            break
        pos = nl.end()
    else:
        if full:
            last = _LAST_LINE.match(text, pos)
    if not full:
        return None
    if last is not None and not (last.group(1).endswith("=") or len(last.group(1)) >= 16):
        last = None  # a short word on the next line is not the key's last line
    span_start, span_end = full[0].start(1), (last.end(1) if last is not None else full[-1].end(1))
    first = full[0].group(1)
    secret = ((len(full) >= 2 or last is not None)
              # random base64 has all three classes; `AAAA...` and `////...` are not keys
              and all(any(f(c) for c in first) for f in (str.isupper, str.islower, str.isdigit))
              and not _PUBLIC_BEGIN.search(text, max(0, start - 80), start))  # a certificate or public key
    return span_start, span_end, secret


def _key_body_spans(text: str) -> Iterable[tuple[int, int]]:
    mapped = text.encode("latin-1", "replace").translate(_B64_TABLE)  # latin-1 + replace: offsets stay the same
    done, hit = 0, mapped.find(_B64_RUN)
    while hit != -1:
        if hit >= done:
            # the block's first line is a whole line, or ends a line that starts otherwise (`"content": "MIIE...\n`)
            block = _key_body_at(text, _line_start(text, hit)) or _key_body_at(text, hit)
            if block:
                if block[2]:
                    yield block[0], block[1]
                done = block[1]
        run_end = mapped.find(b" ", hit + len(_B64_RUN))
        if run_end == -1:
            break
        hit = mapped.find(_B64_RUN, max(run_end, done))


# ---- 1c. cookies ------------------------------------------------------------------------------------

# `Cookie: a=1; b=2` (every value is a credential or tracks one), `Set-Cookie: sid=...; Path=/` (the first
# pair; the attributes after it are not secret), `curl --cookie 'sid=...'` / `-b`. Also as a dict key
# (`"Cookie": "sid=..."`) and inside JSON-encoded text.
_COOKIE_HEADER = re.compile(r"(?:ookie|OOKIE)\\?[\"']?[ \t]*:[ \t]*\\?[\"']?([^\r\n\"'\\]{1,4096})")
_COOKIE_FLAG = re.compile(r"-(?:-cookie[ \t=]|b[ \t])[ \t]*\\?[\"']?([^\r\n\"'\\]{1,4096})")
_COOKIE_PAIR = re.compile(r"[ \t]*([^=;,\s]{1,256})=([^;\s]{1,4096})")
_COOKIE_ATTRIBUTES = frozenset(("path", "domain", "expires", "max-age", "samesite", "secure", "httponly",
                                "priority", "partitioned", "version", "comment"))


def _cookie_spans(text: str) -> Iterable[tuple[int, int]]:
    # literal-led regexes, the rest checked here: a leading alternation or lookbehind is tried at every position
    headers = [(m, text[m.start() - 5:m.start() - 1].lower() == "set-") for m in _COOKIE_HEADER.finditer(text)
               if m.start() and text[m.start() - 1] in "Cc"]
    flags = [(m, False) for m in _COOKIE_FLAG.finditer(text) if m.start() and text[m.start() - 1] in " \t"]
    for m, set_cookie in headers + flags:
        pos, end = m.start(1), m.end(1)
        while pos < end and (pair := _COOKIE_PAIR.match(text, pos, end)) is not None:
            name, value = pair.group(1), pair.group(2)
            if (name.lower() not in _COOKIE_ATTRIBUTES and not _is_placeholder(value) and value != "deleted"
                    and "[REDACTED:" not in value):
                yield pair.start(2), pair.end(2)
            if set_cookie:
                break  # Set-Cookie: the cookie, then its attributes
            pos = pair.end()
            while pos < end and text[pos] in "; \t":
                pos += 1


# ---- 1d. .netrc-style `password VALUE` --------------------------------------------------------------

# `machine HOST login USER password PASSWORD` on one line, or `password PASSWORD` on a line of its own
# (a multi-line .netrc, also as `grep -n` or <search> shows one line of it: `.netrc:3:  password ...`).
_NETRC = re.compile(r"password[ \t]+([^\s\\\"'=:({\[][^\s\\\"']{0,255})[ \t]*(?=\r?\n|\\[rn]|$|\\?[\"']|(?:machine|login|account)\b)")
_NETRC_LEAD = re.compile(r"[+\-]?(?:[^\s:]{1,4096}:\d{1,9}:)?[ \t]*")
_NETRC_LOGIN = re.compile(r"\blogin[ \t]+\S+[ \t]+$")


def _netrc_spans(text: str) -> Iterable[tuple[int, int]]:
    for m in _NETRC.finditer(text):
        lead = _line_start(text, m.start())
        if (_NETRC_LEAD.fullmatch(text, lead, m.start()) or _NETRC_LOGIN.search(text, lead, m.start())) \
                and not _is_placeholder(m.group(1)) and not m.group(1).startswith("[REDACTED:"):
            yield m.start(1), m.end(1)


# ---- 2. secret-named assignments ------------------------------------------------------------------

# The key must END with a secret word (`client_secret`, `dbPassword`, `API_TOKEN`, `secret_key`, `DB_PASS`), so
# `tokenizer = ...` and `max_tokens = ...` are not keys. Case-insensitive regexes that start with an
# alternation are slow (150 ms per MB), so the words are found with str.find on an ASCII-lowered copy
# and the rest (assignment operator, quote, value) is matched from there.
_SECRET_WORDS = ("password", "passwd", "passphrase", "pwd", "pass", "secret", "token", "apikey", "api_key", "api-key",
                 "access_key", "accesskey", "private_key", "privatekey", "auth_key", "authkey", "credential",
                 "credentials", "signing_key", "encryption_key", "key")
# Words that are also parts of ordinary names only count after a separator or as a camelCase part:
# `DB_PASS`, `dbPass`, `db-pass`, `STRIPE_KEY`, `masterKey` -- but not `bypass`, `monkey`, `keys`.
_SUFFIX_ONLY = {"pass": True, "key": False}  # word -> may also be the whole key (`pass: x` in YAML)
_PASSWORD_WORDS = ("password", "passwd", "passphrase", "pwd", "pass")
_ASSIGN_OP = re.compile(r"(?:[_-]?(?i:key|value|str))?(?![A-Za-z0-9])(\\?[\"'\]])?([ \t]*)(=|:=|:|=>)([ \t]*)")
_ASSIGN_VALUE = re.compile(  # possessive, so `x = call(` is not cut to `cal`
    r"\\?([\"'`]?)([^\s\"'`<>(){}\[\],;|\\]{4,256}+)\\?\1(?!\()")
# an unquoted shell/env value: up to whitespace or a shell operator; a quoted one: up to its quote
_ENV_VALUE = re.compile(r"\\?([\"'])([^\"'\\\n]{1,256})\\?\1|([^\s\"'`;&|<>(),\\]{1,256})")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _line_start(text: str, pos: int) -> int:
    """Start of the line holding `pos`; inside JSON-encoded text a line also starts after the two characters `\n`."""
    nl = text.rfind("\n", 0, pos) + 1
    escaped = text.rfind("\\n", nl, pos)
    return escaped + 2 if escaped != -1 else nl


# what may stand before an env-style `NAME=value` on its line: nothing (an env file, `env` output), or
# export, `declare -x` (export -p), Dockerfile ENV, a YAML list item (docker-compose), `set`, `env`. An
# indented bare `NAME=value` is more often a keyword argument (`API_KEY=api_key,`) than shell. A diff's
# +/- column may come first (the episode's final diff).
_YAML_LEAD = re.compile(r"[+\-]?[ \t]*(?:-[ \t]+)?")
_ENV_LEAD = re.compile(r"[+\-]?(?:[ \t]*(?:export|declare[ \t]+-[a-zA-Z]+|ENV|set|env|-)[ \t]+)?[\"']?")


def _assignments(text: str, lower: str):
    """(value start, value end, tier, secret word) of every `<...secret word> = <value>`.

    tier: "env" for `NAME=value` in shell/env form (an env file, `env` output, `export`), where the value
    is a literal whatever it looks like; "password" for a password-named key; "key" for a `*_KEY`
    name; "plain" for the rest. `find_secrets` applies each tier's test to the value.
    """
    for word in _SECRET_WORDS:
        pos = lower.find(word)
        while pos != -1:
            end = pos + len(word)
            found = _assignment_at(text, word, pos, end)
            if found:
                yield found
            pos = lower.find(word, end)


def _assignment_at(text: str, word: str, pos: int, end: int):
    op = _ASSIGN_OP.match(text, end)
    if not op:
        return None
    key_start = pos
    while key_start and text[key_start - 1] in _KEY_CHARS:
        key_start -= 1
    if text.startswith(("n", "t", "r"), key_start) and text[key_start - 1:key_start] == "\\":
        key_start += 1  # JSON-encoded text: `\nDB_PASS=...` is a newline, then the key
    if word in _SUFFIX_ONLY:
        before = text[pos - 1] if pos > key_start else ""
        camel = before.islower() and text[pos].isupper()
        if not (before in ("_", "-", ".") or camel or (before == "" and _SUFFIX_ONLY[word])):
            return None
    key = text[key_start:op.start(2) if op.group(1) is None else op.start(1)]
    if key.upper() in ("PWD", "OLDPWD"):
        return None  # the working directory in `env` output, not a password
    value_at = op.end()
    screaming = key.upper() == key and any(c.isalpha() for c in key)
    if screaming and op.group(3) == "=" and not op.group(2) and not op.group(4) and op.group(1) is None:
        lead = _line_start(text, key_start)
        at_line_start = _ENV_LEAD.fullmatch(text, lead, key_start) is not None
        inline = key_start and text[key_start - 1] in " \t\"'"
        if at_line_start or inline:
            m = _ENV_VALUE.match(text, value_at)
            if m:
                quoted = m.group(2) is not None
                start, stop = (m.start(2), m.end(2)) if quoted else (m.start(3), m.end(3))
                return start, stop, ("env" if at_line_start or quoted else "env_inline"), word
    m = _ASSIGN_VALUE.match(text, value_at)
    if not m:
        return None
    quoted = bool(m.group(1))
    if word in _PASSWORD_WORDS:
        if quoted:
            return m.start(2), m.end(2), "password", word
        yaml_key = _YAML_LEAD.fullmatch(text, _line_start(text, key_start), key_start) is not None
        if op.group(3) == ":" and yaml_key:  # `db_password: hunter22` in YAML
            return m.start(2), m.end(2), "password_yaml", word
    tier = "key" if word == "key" else "plain"
    return m.start(2), m.end(2), tier if quoted else tier + "_unquoted", word


ENTROPY_LIMIT = 3.0  # bits per character; detect-secrets uses 3.0 for hex and 4.5 for unquoted base64
_WORD_SEP = re.compile(r"[_.\-]")
# a word: lower, UPPER or Title letters with at most a short number after them (s3, v2, Base64)
_WORD = re.compile(r"^(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)[0-9]{0,3}$|^[0-9]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


# the word itself as the value is documentation: `redis://:secret@host`, `password="password"`
_PLACEHOLDER_WORDS = frozenset(("password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key",
                                "api-key", "key", "auth", "credentials", "xxx", "xxxx", "xxxxxxxx"))


_SHELL_EXPANSION = re.compile(r"\$[({A-Z_]")


def _is_placeholder(value: str) -> bool:
    """`Bearer $TOKEN`, `Bearer YOUR_API_KEY`, `user:PASSWORD@`, `:secret@`, `your-api-key`, `sk-...`,
    `"sk-$(openssl rand -hex 32)"`: documentation or a reference, not a secret."""
    lower = value.lower()
    return (value.startswith(("$", "%", "{", "<")) or (value.isupper() and _IDENT.match(value) is not None)
            or lower in _PLACEHOLDER_WORDS or lower.startswith("your") or "example" in lower
            or value.endswith(("...", "…")) or _SHELL_EXPANSION.search(value) is not None)


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


_PATH = re.compile(r"^(?:/|~/|\./|\.\./)[^\s]*$")
_NOT_SECRETS = frozenset(("true", "false", "yes", "no", "on", "off", "null", "none", "nil", "undefined"))
_LETTER_WORDS = re.compile(r"^(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)$")
_ANY_SEP = re.compile(r"[^A-Za-z0-9]+")


def _words_only(value: str, sep: re.Pattern = _WORD_SEP, word: re.Pattern = _LETTER_WORDS) -> bool:
    """`my_password`, `Password`, `access-token`: letters-only words, no digits or symbols."""
    return all(word.match(seg) for seg in sep.split(value) if seg)


def _not_a_value(value: str) -> bool:
    """Placeholders, references and paths, whatever the key: `$DB_PASS`, `{password}`, `***`, `/run/secrets/db`."""
    return (len(value) < 3 or _MARK_RE.search(value) is not None or _is_placeholder(value)
            or value.startswith(("*", "!", "&", "os.", "env.", "process.env")) or value.lower() in _NOT_SECRETS
            or _PATH.match(value) is not None)



_WORDISH = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{2,}(?![a-z])")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")


def _camel_words(value: str) -> bool:
    """`S3AccessPointAttachments`, `v2:users:list`, `HTTPServerV2`: 3/4 of the letters are in words of 3+
    lowercase letters with a vowel (maybe capitalised) or in acronyms, and few digits. Random keys
    (`a3f9c2e1...`, `xK9mPq2R...`, `k3j9x2mq...`) are mostly short letter runs and digits."""
    letters = sum(c.isalpha() for c in value)
    digits = sum(c.isdigit() for c in value)
    in_words = sum(len(w) for w in _WORDISH.findall(value) if w.isupper() or _VOWEL.search(w))
    return letters > 0 and digits <= 0.2 * (letters + digits) and in_words >= 0.75 * letters


def value_is_secret(value: str, tier: str) -> bool:
    """Whether the value of a secret-named assignment (see `_assignments` for the tiers) is a secret."""
    if _not_a_value(value):
        return False
    if tier in ("env", "env_inline"):  # a shell literal: `DB_PASS=changeme` is a password
        if value.isdigit() and len(value) <= 6:
            return False  # `MAX_TOKENS=512`-like counts, ports
        return not (tier == "env_inline" and _IDENT.match(value) and not any(c.isdigit() for c in value))
    if tier == "password":  # a quoted literal under a password name: `DB_PASS = "hunter22"`
        return len(value) >= 6 and not _words_only(value) and not (_IDENT.match(value) and "." in value)
    if tier == "password_yaml":  # `password: hunter22`, but not `password: str` (an annotation)
        return (len(value) >= 6 and not _words_only(value)
                and not (_IDENT.match(value) and not any(c.isdigit() for c in value)))
    if tier in ("key", "key_unquoted"):  # `*_KEY` names are also cache keys, sort keys, ...: only credentials
        return (len(value) >= 16 and looks_random(value, tier == "key") and not _camel_words(value)
                and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))
    return len(value) >= 8 and looks_random(value, tier == "plain")


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
            if value and not (group and (_is_placeholder(value) or value.startswith(("*", "[REDACTED:"))
                                         or _PATH.match(value)
                                         or kind == "auth" and _words_only(value))):
                spans.append((m.start(group), m.end(group), kind))
    spans += [(a, b, "private_key") for a, b in _key_body_spans(text)]
    if "password " in text or "password\t" in text:
        spans += [(a, b, "password") for a, b in _netrc_spans(text)]
    if "ookie" in text or "OOKIE" in text or "-b" in text:
        spans += [(a, b, "cookie") for a, b in _cookie_spans(text)]
    lower = text.lower()
    if len(lower) != len(text):  # a few non-ASCII letters lower to two characters (İ); keep offsets
        lower = text.translate(_ASCII_LOWER)
    for start, end, tier, word in _assignments(text, lower):
        if value_is_secret(text[start:end], tier):
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


def commit_subject(task: str, limit: int = 72) -> str:
    """A task as a commit message's subject: its first non-empty line, secrets redacted, control
    characters gone, at most `limit` characters. The whole task is redacted first, so that a secret
    that needs its context (a key's BEGIN line, a value on the next line) is caught before the cut,
    and the cut never leaves part of a secret that the patterns would no longer recognise."""
    text = redact_text(task)
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(_CONTROL.sub(" ", line).split())
    if len(line) <= limit:
        return line
    cut = line[:limit - 1]
    marker = cut.rfind("[REDACTED:")
    if marker != -1 and "]" not in cut[marker:]:
        cut = cut[:marker]  # never half a marker
    return cut.rstrip() + "…"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
