"""The throwaway PostgreSQL cluster the team-store tests run against (tests/pg_server.py)."""

import subprocess
from urllib.parse import urlsplit


def test_each_test_gets_its_own_empty_database(pg_cluster, pg_url):
    db = urlsplit(pg_url).path.lstrip("/")
    pg_cluster.psql(db, "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)")
    assert pg_cluster.psql(db, "SELECT sum(x) FROM t").strip() == "42"
    other = pg_cluster.create_database("another_one")
    tables = pg_cluster.psql(urlsplit(other).path.lstrip("/"),
                             "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables.strip() == "0"


def test_the_server_listens_on_loopback_only_and_wants_the_password(pg_cluster):
    assert pg_cluster.psql("postgres", "SHOW listen_addresses").strip() == "127.0.0.1"
    wrong = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_cluster.port), "-U", "learnagent",
                            "-d", "postgres", "-w", "-c", "SELECT 1"], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "PGPASSWORD": "not-the-password"})
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
