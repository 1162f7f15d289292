"""SQLite connection and ordered migrations.

One database for all repositories (`$LEARNAGENT_HOME/learnagent.db`), in WAL mode so that
several `do` runs and a `sleep` can read and write at once. Migrations are the numbered
`migrations/NNNN_name.sql` files, applied in order; `PRAGMA user_version` holds the last one.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from learnagent.core.errors import StoreError

BUSY_TIMEOUT_MS = 30_000


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("learnagent.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text()))
    return sorted(found)


def connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the episode store {path} is unreadable ({exc}); move it aside (it is a backup) and a new one is made"
        ) from None
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen; returns the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, _name, sql in migrations():
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check inside the write lock: another process may have migrated meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = number
    return current


def _statements(sql: str) -> list[str]:
    out, buf = [], []
    for line in sql.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            out.append("\n".join(buf))
            buf = []
    return [s for s in out if s.strip() and not all(l.strip().startswith("--") or not l.strip() for l in s.splitlines())]
