"""Realistic FAKE secrets for the redaction tests, built at import time from a seeded RNG.

They are generated rather than written out so that no token-shaped literal sits in the
repository (secret scanners on push would flag them, and rightly so).
`SAMPLES` maps a name to (text containing the secret, the secret value that must disappear).
"""

from __future__ import annotations

import base64
import json
import random
import string

_rng = random.Random(1234)
ALNUM = string.ascii_letters + string.digits
UPPER_NUM = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


AWS_ID = "AKIA" + rnd(16, UPPER_NUM)
AWS_SECRET = rnd(40, B64)
GH_PAT = "ghp_" + rnd(36)
GH_OAUTH = "gho_" + rnd(36)
GH_SERVER = "ghs_" + rnd(36)
GH_FINE = "github_pat_" + rnd(22) + "_" + rnd(59)
GITLAB = "glpat-" + rnd(20, URLSAFE)
SLACK_BOT = "xoxb-" + rnd(12, string.digits) + "-" + rnd(13, string.digits) + "-" + rnd(24)
SLACK_USER = "xoxp-" + rnd(12, string.digits) + "-" + rnd(12, string.digits) + "-" + rnd(32, "abcdef0123456789")
SLACK_HOOK = f"https://hooks.slack.com/services/T{rnd(8, UPPER_NUM)}/B{rnd(8, UPPER_NUM)}/{rnd(24)}"
OPENAI = "sk-" + rnd(48)
OPENAI_PROJ = "sk-proj-" + rnd(74, URLSAFE)
ANTHROPIC = "sk-ant-api03-" + rnd(93, URLSAFE) + "AA"
GOOGLE = "AIza" + rnd(35, URLSAFE)
STRIPE = "sk_live_" + rnd(24)
STRIPE_RK = "rk_live_" + rnd(24)
HF = "hf_" + rnd(34)
NPM = "npm_" + rnd(36)
PYPI = "pypi-AgEIcHlwaS5vcmc" + rnd(60, URLSAFE)
TWILIO = "SK" + rnd(32, string.ascii_lowercase + string.digits)
SENDGRID = "SG." + rnd(22, URLSAFE) + "." + rnd(43, URLSAFE)
JWT = (_b64url({"alg": "HS256", "typ": "JWT"}) + "." + _b64url({"sub": rnd(10), "name": "Jane", "iat": 1516239022})
       + "." + rnd(43, URLSAFE))
DB_PASS = rnd(18)
GIT_TOKEN_PASS = rnd(32)
BASIC = base64.b64encode(f"admin:{rnd(14)}".encode()).decode()
BEARER = rnd(40, URLSAFE + ".")
ENV_PASSWORD = rnd(6, string.ascii_lowercase) + rnd(4, string.digits) + rnd(6, string.ascii_uppercase) + "!x"
DJANGO_SECRET = "django-insecure-" + rnd(40, string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)")[:40].replace("(", "x").replace(")", "y")
API_KEY_HEX = rnd(32, "abcdef0123456789")
CLIENT_SECRET = rnd(28, URLSAFE)
PEM_BODY = "\n".join(rnd(64, B64) for _ in range(6)) + "\n" + rnd(20, B64) + "=="
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
OPENSSH = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----"
TELEGRAM = rnd(9, string.digits) + ":" + rnd(35, URLSAFE)
# issue 10: classes the first redactor missed (generated after the ones above, so those keep their values)
KEY_LINES = [rnd(64, B64) for _ in range(8)] + [rnd(40, B64) + "=="]
OPENSSH_LINES = [rnd(70, B64) for _ in range(4)] + [rnd(12, B64)]
HUMAN_PASS = rnd(5, string.ascii_lowercase) + rnd(3, string.digits) + "!" + rnd(3, string.ascii_uppercase)
HUMAN_PASS2 = rnd(4, string.ascii_lowercase) + "-" + rnd(4, string.digits) + "-" + rnd(4, string.ascii_lowercase)
REDIS_PASS = rnd(24)
DOCKER_AUTH = base64.b64encode(f"deploy:{rnd(16)}".encode()).decode()
SESSION_COOKIE = rnd(32, URLSAFE)
CSRF_COOKIE = rnd(32)
SET_COOKIE = rnd(40, URLSAFE)
MYSQL_PASS = rnd(6, string.ascii_letters) + rnd(3, string.digits)
CLI_PASS = rnd(10, ALNUM)
STRIPE_LIKE_KEY = rnd(12, string.ascii_lowercase) + rnd(12, string.digits)

SAMPLES: dict[str, tuple[str, str]] = {
    "aws_id": (f"export AWS_ACCESS_KEY_ID={AWS_ID}", AWS_ID),
    "aws_secret": (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    "aws_secret_json": (f'{{"AWSSecretKey": "{AWS_SECRET}"}}', AWS_SECRET),
    "github_pat": (f"git remote set-url origin https://x-access-token:{GH_PAT}@github.com/o/r.git", GH_PAT),
    "github_oauth": (f"GITHUB_TOKEN={GH_OAUTH}", GH_OAUTH),
    "github_server": (f"token: {GH_SERVER}", GH_SERVER),
    "github_fine": (f"gh auth login --with-token <<< {GH_FINE}", GH_FINE),
    "gitlab": (f"curl --header 'PRIVATE-TOKEN: {GITLAB}' https://gitlab.example.com/api/v4/projects", GITLAB),
    "slack_bot": (f"SLACK_BOT_TOKEN={SLACK_BOT}", SLACK_BOT),
    "slack_user": (f"client = WebClient(token='{SLACK_USER}')", SLACK_USER),
    "slack_webhook": (f"requests.post('{SLACK_HOOK}', json=payload)", SLACK_HOOK.rsplit("/", 1)[1]),
    "openai": (f'openai.api_key = "{OPENAI}"', OPENAI),
    "openai_proj": (f"OPENAI_API_KEY={OPENAI_PROJ}", OPENAI_PROJ),
    "anthropic": (f"client = Anthropic(api_key={ANTHROPIC!r})", ANTHROPIC),
    "google": (f"const mapsKey = '{GOOGLE}';", GOOGLE),
    "stripe": (f"stripe.api_key = '{STRIPE}'", STRIPE),
    "stripe_rk": (f"STRIPE_RESTRICTED={STRIPE_RK}", STRIPE_RK),
    "huggingface": (f"huggingface-cli login --token {HF}", HF),
    "npm": (f"//registry.npmjs.org/:_authToken={NPM}", NPM),
    "pypi": (f"[pypi]\nusername = __token__\npassword = {PYPI}\n", PYPI),
    "twilio": (f"twilio_key = {TWILIO}", TWILIO),
    "sendgrid": (f"sg = SendGridAPIClient('{SENDGRID}')", SENDGRID),
    "jwt": (f"Cookie: session={JWT}; Path=/", JWT),
    "postgres_url": (f"DATABASE_URL=postgres://app:{DB_PASS}@db.internal:5432/prod", DB_PASS),
    "https_token_url": (f"fatal: unable to access 'https://bob:{GIT_TOKEN_PASS}@git.example.com/r.git/'",
                        GIT_TOKEN_PASS),
    "basic_header": (f"curl -H 'Authorization: Basic {BASIC}' https://api.example.com", BASIC),
    "bearer_header": (f'headers = {{"Authorization": "Bearer {BEARER}"}}', BEARER),
    "env_password": (f"DB_PASSWORD={ENV_PASSWORD}", ENV_PASSWORD),
    "django_secret": (f"SECRET_KEY = '{DJANGO_SECRET}'", DJANGO_SECRET),
    "api_key_hex": (f'config = {{"api_key": "{API_KEY_HEX}"}}', API_KEY_HEX),
    "client_secret_yaml": (f"oauth:\n  client_secret: {CLIENT_SECRET}\n", CLIENT_SECRET),
    "camel_js": (f"const dbPassword = \"{ENV_PASSWORD}\";", ENV_PASSWORD),
    "pem": (f"key = '''{PEM}'''", PEM_BODY.splitlines()[2]),
    "openssh": (f"$ cat ~/.ssh/id_ed25519\n{OPENSSH}\n$ ", PEM_BODY.splitlines()[0]),
    "pem_truncated": (f"{PEM[:200]}\n[output truncated]", PEM_BODY.splitlines()[1][:40]),
    "telegram": (f"bot = Bot('{TELEGRAM}')", TELEGRAM.split(":")[1]),
    # a ranged read of a key file: body lines without BEGIN (sed -n 3,11p), with <read>'s line numbers,
    # with cat -n's, and the end of an OpenSSH key (tail -4)
    "key_body_sed": ("$ sed -n 3,11p deploy_key\n" + "\n".join(KEY_LINES[1:]) + "\n$ ", KEY_LINES[4]),
    "key_body_read": ("deploy_key (28 lines)\n" + "\n".join(f"{n:>5} {line}" for n, line in enumerate(KEY_LINES, 2))
                      + "\n   11 -----END RSA PRIVATE KEY-----", KEY_LINES[0]),
    "key_body_cat_n": ("\n".join(f"{n:>6}\t{line}" for n, line in enumerate(KEY_LINES[:3], 5)), KEY_LINES[1]),
    "key_body_openssh": ("\n".join(OPENSSH_LINES) + "\n-----END OPENSSH PRIVATE KEY-----", OPENSSH_LINES[2]),
    # *_PASS / *_PASSWORD / *_SECRET / *_TOKEN / *_KEY names, human-chosen values, every syntax
    "db_pass_env": (f'DB_PASS="{HUMAN_PASS}"', HUMAN_PASS),
    "db_pass_env_bare": (f"DB_PASS={HUMAN_PASS2}\nDB_HOST=db.internal", HUMAN_PASS2),
    "db_pass_export": (f"export POSTGRES_PASSWORD='{HUMAN_PASS}'", HUMAN_PASS),
    "db_pass_compose": (f"    environment:\n      - MYSQL_ROOT_PASSWORD={HUMAN_PASS2}", HUMAN_PASS2),
    "db_pass_yaml": (f"database:\n  db_pass: {HUMAN_PASS}\n  host: db", HUMAN_PASS),
    "db_pass_yaml_quoted": (f'db_password: "{HUMAN_PASS2}"', HUMAN_PASS2),
    "db_pass_json": (f'{{"db_pass": "{HUMAN_PASS}", "host": "db"}}', HUMAN_PASS),
    "db_pass_python": (f'DB_PASS = "{HUMAN_PASS2}"', HUMAN_PASS2),
    "app_secret_env": (f"APP_SECRET={HUMAN_PASS2}", HUMAN_PASS2),
    "service_key_env": (f"PAYMENTS_KEY={STRIPE_LIKE_KEY}", STRIPE_LIKE_KEY),
    "service_key_python": (f'PAYMENTS_SERVICE_KEY = "{STRIPE_LIKE_KEY}"', STRIPE_LIKE_KEY),
    "env_output_token": (f"HOME=/root\nDEPLOY_TOKEN={HUMAN_PASS2}\nPWD=/srv/app", HUMAN_PASS2),
    # URL userinfo with an empty user
    "redis_url": (f"REDIS_URL=redis://:{REDIS_PASS}@cache.internal:6379/0", REDIS_PASS),
    "amqp_url_in_code": (f'broker = "amqp://:{REDIS_PASS}@rabbit:5672//"', REDIS_PASS),
    # docker's ~/.docker/config.json
    "docker_auth": (f'{{"auths": {{"registry.example.com": {{"auth": "{DOCKER_AUTH}"}}}}}}', DOCKER_AUTH),
    # cookies
    "cookie_header": (f"curl -H 'Cookie: sessionid={SESSION_COOKIE}; csrftoken={CSRF_COOKIE}' https://app/api",
                      CSRF_COOKIE),
    "cookie_dict": (f'headers = {{"Cookie": "sessionid={SESSION_COOKIE}"}}', SESSION_COOKIE),
    "set_cookie": (f"< Set-Cookie: remember_token={SET_COOKIE}; Path=/; HttpOnly; Secure", SET_COOKIE),
    "curl_cookie_flag": (f"curl --cookie 'sid={SET_COOKIE}' https://app/", SET_COOKIE),
    # passwords on command lines
    "mysql_p": (f"mysql -u root -p{MYSQL_PASS} -h db app_db", MYSQL_PASS),
    "mysqldump_p_quoted": (f"mysqldump -uroot -p'{MYSQL_PASS}' app_db > dump.sql", MYSQL_PASS),
    "password_flag": (f"psql-wrapper --password={CLI_PASS} --host db", CLI_PASS),
    "password_flag_space": (f"docker login -u deploy --password {CLI_PASS} registry.example.com", CLI_PASS),
    "sshpass": (f"sshpass -p '{CLI_PASS}' ssh deploy@host", CLI_PASS),
    "openssl_pass": (f"openssl rsa -in key.pem -passin pass:{CLI_PASS}", CLI_PASS),
    "netrc": (f"machine api.example.com\n  login deploy\n  password {CLI_PASS}", CLI_PASS),
}

# Text that looks secret-named but holds none: must come out of the redactor unchanged.
NOT_SECRETS = [
    "PWD=/home/dev/projects/app-2024/src",
    "OLDPWD=/home/dev/projects/app-2024",
    "HOME=/root\nPWD=/work/repo\nSHLVL=1\nSSH_AUTH_SOCK=/tmp/ssh-XXXXabc123/agent.42\nMAX_TOKENS=4096\n"
    "GPG_KEY_PATH=/etc/keys/release.asc\nUSE_TOKEN_AUTH=true",
    "DB_PASS=$DB_PASS",
    'DB_PASS="${POSTGRES_PASSWORD}"',
    "export API_TOKEN=",
    "PASSWORD_MIN_LENGTH=12",
    'export LITELLM_MASTER_KEY="sk-$(openssl rand -hex 32)"',
    "API_KEY=your-api-key-here",
    "    ARGILLA_API_KEY=_credentials_api_key,",
    "password: str",
    "password: Optional[str] = None",
    "db_pass: ${DB_PASS}",
    'password_field = "password"',
    'autocomplete="current-password"',
    "bypass = 'abcdef12345'",
    "for key in sorted(keys):",
    "primary_key=True",
    'cache_key = "v2:users:list:page"',
    '"result_key": "S3AccessPointAttachments"',
    "mkdir -p build/dist && cp -p a b",
    "python -m pytest -p no:cacheprovider",
    "git checkout -b feature/login",
    'parser.add_argument("--password", help="the password")',
    "deploy --token $DEPLOY_TOKEN --api-key YOUR_API_KEY",
    "url = 'redis://:secret@localhost:6379'  # docs example",
    '{"auth": "basic", "type": "oauth2"}',
    "document.cookie = name + '=' + value;",
    "Cookie: $COOKIE",
    "-----BEGIN CERTIFICATE-----\n" + "\n".join(rnd(64, B64) for _ in range(3)) + "\n-----END CERTIFICATE-----",
]

ALL_SECRET_VALUES = sorted({value for _text, value in SAMPLES.values()})
NOT_SECRETS += [
    'if password is None:\n    password = ""',  # `password VALUE` lines (.netrc) are not assignments
    "    password : str",
]
