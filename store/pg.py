"""The store on PostgreSQL (a team's shared store, issue 14): a psycopg connection that speaks like
the sqlite3 one the store's statements were written for.

The statements in store/*_rows.py and store/episodes.py are plain SQL with `?` placeholders that
run on both databases (portable upserts `ON CONFLICT`, no RETURNING, integer 0/1 flags). This
adapter changes only what a DB-API driver differs in: `?` becomes psycopg's `%s`, `BEGIN IMMEDIATE`
(SQLite's "take the write lock now") becomes `BEGIN`, rows answer to both `row["name"]` and
`row[0]` like `sqlite3.Row`, and the driver's errors become one-line `StoreError`s (a unique-key
clash stays an `IntegrityError`, `INTEGRITY_ERRORS` in store/db.py; it fails the whole transaction
on PostgreSQL, so the store never catches it to carry on: it asks with ON CONFLICT DO NOTHING).
The connection runs in autocommit, as the SQLite one does (isolation_level=None): a statement
outside `Store.transaction()` commits on its own.

psycopg is imported only here, and only when a `postgresql://` store is opened.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from learnagent.core.errors import StoreError

CONNECT_TIMEOUT_S = 10
# Store.transaction() promises what SQLite's BEGIN IMMEDIATE gives: the write lock up front, so a
# read-then-write inside it (commit_processed then mark_commit_processed, MAX(seq)+1 then INSERT) is
# atomic against other processes. READ COMMITTED alone would not be; every store transaction takes
# this transaction-scoped advisory lock first, so writers queue as they do on SQLite (reads never wait).
WRITE_LOCK_KEY = 0x1EA2_0001
LOCK_TIMEOUT_S = 30


class PgIntegrityError(Exception):
    """A constraint refused a row (a duplicate key): the PostgreSQL twin of sqlite3.IntegrityError."""


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


class Row:
    """A result row readable by column name and by position, like sqlite3.Row (and dict(row) works)."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]):
        self._values = values
        self._index = index

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values))})"


def _row_factory(cursor):
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    return lambda values: Row(values, index)


@lru_cache(maxsize=512)
def translate(sql: str, with_params: bool = True) -> str:
    """A statement written for sqlite3 as psycopg wants it: `BEGIN IMMEDIATE` -> `BEGIN`; with
    parameters, `?` -> `%s` and a literal `%` doubled (psycopg reads `%` only when it binds
    parameters). The store's statements never put `?` inside a string literal."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    if not with_params:
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PgConnection:
    """The store's connection to PostgreSQL: `execute`, `executemany`, `in_transaction`, `close`."""

    dialect = "postgresql"

    def __init__(self, raw, url: str):
        self.raw = raw
        self.url = url

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Iterable[Any] = ()):
        cur = self.raw.cursor(row_factory=_row_factory)
        params = tuple(params)
        statement = translate(sql, bool(params))
        with self._errors():
            cur.execute(statement, params or None)
            if statement == "BEGIN" and sql.strip().upper() == "BEGIN IMMEDIATE":
                try:
                    cur.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                except BaseException:
                    self.raw.execute("ROLLBACK")  # as on SQLite: a BEGIN that failed leaves no transaction
                    raise
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]):
        cur = self.raw.cursor(row_factory=_row_factory)
        rows = [tuple(r) for r in rows]
        if rows:
            with self._errors():
                cur.executemany(translate(sql), rows)
        return cur

    def close(self) -> None:
        self.raw.close()

    def _errors(self):
        return _translated_errors(self.url)


class _translated_errors:
    """psycopg's errors as the store's: a duplicate key -> PgIntegrityError, a lost or refused
    connection -> a one-line StoreError naming the store (without its password)."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        import psycopg

        if isinstance(exc, psycopg.IntegrityError):
            raise PgIntegrityError(_first_line(exc)) from exc
        if isinstance(exc, psycopg.OperationalError):
            raise StoreError(f"the store {safe_url(self.url)} failed: {_first_line(exc)}") from None
        if isinstance(exc, psycopg.Error):
            raise StoreError(f"the store {safe_url(self.url)} refused a statement ({_first_line(exc)}); "
                             "nothing was changed: this is a learnagent bug, please report it") from None
        return False


def connect(url: str) -> PgConnection:
    """An autocommit connection to the store at `url` (postgresql://user:password@host:port/db).
    An unreachable server, a refused login or a missing database is a one-line StoreError."""
    try:
        import psycopg
        from psycopg.types.numeric import FloatLoader
    except ImportError:  # pragma: no cover - psycopg is a dependency
        raise StoreError("a postgresql:// store needs psycopg (pip install 'psycopg[binary]')") from None
    try:
        raw = psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name="learnagent")
    except psycopg.Error as exc:
        raise StoreError(f"cannot open the store {safe_url(url)}: {_pg_reason(exc)}") from None
    raw.adapters.register_loader("numeric", FloatLoader)  # SUM()/AVG() come back as float, as on SQLite
    # wait for the write lock as long as SQLite waits for its own (store/db.py BUSY_TIMEOUT_MS), then fail
    raw.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
    return PgConnection(raw, url)


def libpq_url(url: str) -> str:
    """`postgresql+psycopg://` (SQLAlchemy's spelling) as libpq's `postgresql://`."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy needs to reach the same server through psycopg 3."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def _pg_reason(exc: Exception) -> str:
    """The useful line of a connection failure (libpq puts a generic one first)."""
    lines = [l.strip() for l in str(exc).strip().splitlines() if l.strip()]
    for line in lines:
        low = line.lower()
        if "password authentication failed" in low or "does not exist" in low or "refused" in low \
                or "timeout" in low or "could not translate host name" in low or "no password supplied" in low:
            return line.split(": FATAL:  ")[-1].split("failed: ")[-1]
    return lines[0] if lines else type(exc).__name__
