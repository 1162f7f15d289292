"""A throwaway PostgreSQL cluster on loopback, for tests that need a real server (issue 14).

The server is the distribution's own (`apt-get install postgresql`; .ci/run installs it). A fresh
cluster is made with initdb in a temporary folder, started with pg_ctl on a free loopback port with
its socket in that folder, and removed afterwards; nothing of the machine's own clusters is touched.
PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user the
package creates and every server program runs as that user (runuser). Connections need the
superuser's password (scram-sha-256, a random one per cluster): other local users cannot reach it.

Without the server programs the fixture skips, unless LEARNAGENT_REQUIRE_PG=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "learnagent"


def server_bin() -> Path | None:
    """The folder of initdb/pg_ctl/postgres: the newest /usr/lib/postgresql/N/bin, else PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One throwaway cluster: `start()`, `create_database(name)` -> URL, `stop()` (removes it)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.as_postgres = os.geteuid() == 0
        self.home = Path(tempfile.mkdtemp(prefix="learnagent-pg-"))
        self.data = self.home / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        if self.as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
        self.home.chmod(0o700)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> "Cluster":
        pwfile = self.home / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                  "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        options = (f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=100")
        result = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.home / "log"),
                           "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = (self.home / "log").read_text(errors="replace") if (self.home / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()} {log[-2000:]}")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        env = os.environ | {"PGPASSWORD": self.password}
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                        name], check=True, capture_output=True, text=True, env=env, timeout=60)
        return self.url(name)

    def psql(self, database: str, sql: str) -> str:
        """`sql` through the distribution's psql (unaligned, tuples only): for checks from outside."""
        env = os.environ | {"PGPASSWORD": self.password}
        psql = shutil.which("psql") or str(self.bin / "psql")
        return subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                               "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              check=True, capture_output=True, text=True, env=env, timeout=60).stdout

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.home, ignore_errors=True)
