"""The store's connection (SQLite by default, PostgreSQL for a team) and its one migration history.

Where: `LEARNAGENT_DB` (a path, `sqlite:///path` or `postgresql://user:password@host/db`), else the
user config's `[store] url`, else `$LEARNAGENT_HOME/learnagent.db`; `store_target()` decides.

SQLite: one database for all repositories, in WAL mode so that several `do` runs and a `sleep` can
read and write at once; its header is checked before SQLite opens it, its failures are reported as
"damaged" only after an integrity check says so. PostgreSQL: store/pg.py.

Migrations: Alembic revisions written with SQLAlchemy Core (`migrations/versions/NNNN_name.py`), one
history for both databases (docs/STORE.md, "Migrations"). An SQLite store keeps `PRAGMA user_version`
equal to its Alembic revision's number, so opening an up-to-date store never imports Alembic; a store
made before Alembic (user_version 1..6, no alembic_version table) is adopted at its version and
upgraded from there, nothing rewritten.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterator

from learnagent.core.errors import StoreError, UsageError
from learnagent.core.home import PRIVATE_DIR_MODE, create_private_file, db_path, make_private
from learnagent.store.pg import PgIntegrityError

BUSY_TIMEOUT_MS = 30_000
SCRIPT_LOCATION = "learnagent.store:migrations"
# a duplicate key on either database (e.g. a caller-given episode id that is taken). The store never
# catches it to carry on inside a transaction: PostgreSQL has failed the transaction by then; it
# asks with ON CONFLICT DO NOTHING instead (Store.create_episode)
INTEGRITY_ERRORS = (sqlite3.IntegrityError, PgIntegrityError)
_PG_MIGRATION_LOCK = 0x1EA2_A6E7  # pg_advisory_xact_lock key: one migrating process at a time


def migrations() -> list[tuple[int, str]]:
    """(number, file name) of every revision shipped in the package, in order."""
    found = []
    for entry in resources.files("learnagent.store").joinpath("migrations", "versions").iterdir():
        name = entry.name
        if name.endswith(".py") and name[:4].isdigit():
            found.append((int(name[:4]), name))
    return sorted(found)


@lru_cache(maxsize=1)
def head_version() -> int:
    """The newest revision's number: what an up-to-date store's user_version / alembic_version says."""
    return migrations()[-1][0]


# ---- where the store is ------------------------------------------------------------------------

def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0].split("+")[0] in ("postgresql", "postgres")


def parse_target(value: str, where: str) -> str | Path:
    """A store named by the user: a postgresql:// URL as it is, an sqlite:///path or plain path as a Path.
    Anything else (mysql://, http://...) is a usage error (exit 2) saying what is accepted."""
    value = value.strip()
    if is_postgres(value):
        return value
    if value.startswith("sqlite:///"):
        return Path(value.removeprefix("sqlite:///")).expanduser()
    if "://" in value:
        raise UsageError(f"{where}: unsupported store '{value.split('://', 1)[0]}://...'; use "
                         "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE, sqlite:///PATH or a file path")
    return Path(value).expanduser()


def store_target() -> str | Path:
    """The store this process uses: LEARNAGENT_DB, else the user config's [store] url, else the data home's file."""
    env = os.environ.get("LEARNAGENT_DB", "").strip()
    if env:
        return parse_target(env, "LEARNAGENT_DB")
    from learnagent.core.config import user_store_url

    url, where = user_store_url()
    if url:
        return parse_target(url, where)
    return db_path()


def store_exists() -> bool:
    """Whether there is a store to read (without creating one): a PostgreSQL store is there by
    configuration; an SQLite one once its file is."""
    target = store_target()
    return is_postgres(target) or Path(target).exists()


def damaged(path: Path, why: str) -> StoreError:
    """The one-line error for a store known to be damaged (its header, or an integrity check,
    says so), with the way out. Any other SQLite error goes through `store_error`."""
    return StoreError(f"the episode store {path} is damaged ({why}); move it aside "
                      f"(mv {path} {path}.broken) and learnagent starts a new, empty one")


# SQLite's primary result codes that mean the file itself is bad (not a lock, a full disk or a
# constraint): https://sqlite.org/rescode.html
_DAMAGE_CODES = {11: "SQLITE_CORRUPT", 26: "SQLITE_NOTADB"}


def integrity_problem(path: Path, timeout_s: float = 10.0) -> str | None:
    """What `PRAGMA quick_check` finds wrong with the store (its first lines), None when it says ok.

    A check that stops on a corrupt page (SQLITE_CORRUPT while it walks the b-trees) has found
    damage too: that is returned as the problem. Raises sqlite3.Error when the check cannot run
    at all (a lock, not a database); `store_error` decides what that means.
    """
    uri = Path(path).resolve().as_uri() + "?mode=rw"  # never creates a file
    conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        # which page a scribble lands on decides whether quick_check lists it or stops on it
        # (tests/test_corruption.py: the same scribble did each, before and after the schema moved)
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != 11:  # SQLITE_CORRUPT
            raise
        return f"the check stopped on a corrupt page: {exc}"[:300]
    finally:
        conn.close()
    if rows == ["ok"]:
        return None
    return "; ".join(str(r) for r in rows)[:300]


def store_error(path: Path, why: str) -> StoreError:
    """The one-line error for any SQLite failure on the store. It says "damaged" (and how to set
    the file aside) only when an integrity check fails; a constraint error or a lock on an intact
    store is reported as what it is, and never with advice that would discard the store."""
    path = Path(path)
    try:
        problem = integrity_problem(path)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _DAMAGE_CODES:
            return damaged(path, f"{why}; the integrity check cannot even read it: {exc}")
        return StoreError(f"the episode store {path} failed ({why}) and could not be checked ({exc}); nothing "
                          f"was changed: retry, and if it persists check it with "
                          f"sqlite3 {path} 'PRAGMA integrity_check'")
    if problem:
        return damaged(path, f"{why}; integrity check: {problem}")
    return StoreError(f"the episode store refused a change ({why}); the store itself is intact (integrity "
                      f"check ok) and nothing was lost: this is a learnagent bug, please report it with the "
                      f"command that failed")


def header_problem(path: Path) -> tuple[str, bool] | None:
    """What is wrong with the file's SQLite header, and whether it may be a passing state;
    None when nothing is.

    The header's page size x page count is the file's size as of the last checkpoint; in WAL
    mode the file only grows between checkpoints, so a shorter file has lost its tail. But a
    checkpoint in another process writes page 1 (with the new count) before the pages after
    it, so for a moment a healthy file looks short: that verdict is marked passing.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None  # a new database SQLite has not written yet
    with open(path, "rb") as fh:
        header = fh.read(100)
    if len(header) >= 16 and not header.startswith(b"SQLite format 3\0"):
        return "not an SQLite database", False
    if len(header) < 100:
        return f"truncated to {size} bytes", True
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    change_counter = int.from_bytes(header[24:28], "big")
    if valid_for == change_counter and pages and size < pages * page_size:
        return f"truncated: {size} bytes of {pages * page_size}", True
    return None


def check_header(path: Path, settle_s: float = 2.0) -> None:
    """Catch a truncated or foreign file before SQLite does (it may only fail on a later query).
    A file that only looks short is looked at again until `settle_s` has passed."""
    deadline = time.monotonic() + settle_s
    while True:
        problem = header_problem(path)
        if problem is None:
            return
        why, passing = problem
        if not passing or time.monotonic() >= deadline:
            raise damaged(path, why)
        time.sleep(0.05)


def store_files(path: Path) -> list[Path]:
    """The database file and SQLite's companions (write-ahead log, shared-memory index)."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def connect(target: str | Path):
    """The store's connection: sqlite3's for a path, store/pg.py's for a postgresql:// URL; migrated
    to the newest revision either way."""
    if is_postgres(target):
        return connect_postgres(str(target))
    return connect_sqlite(Path(target))


def connect_postgres(url: str):
    from learnagent.store import pg

    conn = pg.connect(url)
    try:
        row = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        current = conn.execute("SELECT version_num FROM alembic_version").fetchone() if row[0] else None
        if current is None or int(current[0]) < head_version():
            _alembic_upgrade(pg.sqlalchemy_url(url), url)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_sqlite(path: Path) -> sqlite3.Connection:
    path = Path(path)
    # The store holds what the agent saw of the user's code: its folder 0700, its files 0600. SQLite
    # gives the -wal and -shm files the database file's mode, so that one is created 0600 first.
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    check_header(path)
    create_private_file(path)
    make_private([path.parent, *store_files(path)])  # an older, looser store: tightened, said once
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA user_version").fetchone()[0] < head_version():
            _alembic_upgrade(f"sqlite:///{path}", str(path))
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"the episode store {path} stayed locked for {BUSY_TIMEOUT_MS // 1000} s ({exc}); "
                             "another learnagent may be stuck: check `ps`, then retry") from None
        if "unable to open" in str(exc) or "readonly" in str(exc):
            raise StoreError(f"cannot write the episode store {path} ({exc}); check that {path.parent} is "
                             "writable, or point LEARNAGENT_HOME elsewhere") from None
        raise store_error(path, str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise store_error(path, str(exc)) from None
    return conn


@contextmanager
def transaction(conn) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception (Ctrl-C too). The write lock is taken
    up front, so a read-then-write inside is atomic against other processes. Inside another
    transaction it joins that one: the outer one commits or rolls back everything.
    (`Store.transaction` is this on the store's connection; on PostgreSQL store/pg.py turns BEGIN
    IMMEDIATE into BEGIN + the store's advisory write lock, so the same holds there.)"""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back itself (a full disk, an I/O error)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _alembic_upgrade(sa_url: str, shown: str) -> None:
    """Bring the database at `sa_url` to the newest revision (Alembic, migrations/env.py). Every pending
    revision runs in one transaction that first takes the database's write lock (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: an advisory lock), so processes opening a new store at once migrate it
    once, and a failure leaves the store as it was."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.pool import NullPool

    if sa_url.startswith("sqlite"):
        engine = sa.create_engine(sa_url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @sa.event.listens_for(engine, "connect")
        def _own_transactions(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # pysqlite's implicit BEGIN off: the "begin" event below decides
            dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            dbapi_conn.execute("PRAGMA foreign_keys = ON")

        @sa.event.listens_for(engine, "begin")
        def _write_lock(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        engine = sa.create_engine(sa_url, poolclass=NullPool)
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["lock_key"] = _PG_MIGRATION_LOCK
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, sqlite3.Error):
            raise exc.orig from None  # connect_sqlite's handlers say what it means
        raise StoreError(f"cannot migrate the store {_shown(shown)}: {str(exc.orig).strip().splitlines()[0]}") from None
    except sa.exc.DBAPIError as exc:
        if isinstance(exc.orig, sqlite3.Error):
            raise exc.orig from None
        raise StoreError(f"the store {_shown(shown)} refused its migration: "
                         f"{str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()


def _shown(target: str) -> str:
    from learnagent.store.pg import safe_url

    return safe_url(target) if is_postgres(target) else target
