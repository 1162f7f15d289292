"""A store as learnagent wrote it before Alembic (numbered .sql files, `PRAGMA user_version`).

tests/data/store_v6/ holds those six files exactly as they shipped (git log: store/migrations/*.sql
before the move to Alembic); `make_legacy_store(path, upto)` applies the first `upto` of them the way
the old store/db.py did, so upgrade tests start from a store made by that code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

LEGACY = Path(__file__).parent / "data" / "store_v6"


def _statements(sql: str) -> list[str]:
    out, buf = [], []
    for line in sql.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            out.append("\n".join(buf))
            buf = []
    return [s for s in out if any(l.strip() and not l.strip().startswith("--") for l in s.splitlines())]


def make_legacy_store(path: Path, upto: int = 6) -> sqlite3.Connection:
    """An SQLite store at legacy version `upto` (1..6); returns an open connection (autocommit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode = WAL")
    for file in sorted(LEGACY.glob("*.sql")):
        number = int(file.name[:4])
        if number <= upto:
            db.execute("BEGIN")
            for statement in _statements(file.read_text()):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
    return db
