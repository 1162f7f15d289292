"""SQLite connection and ordered migrations.

One database for all repositories (`$LEARNAGENT_HOME/learnagent.db`), in WAL mode so that
several `do` runs and a `sleep` can read and write at once. Migrations are the numbered
`migrations/NNNN_name.sql` files, applied in order; `PRAGMA user_version` holds the last one.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

from learnagent.core.errors import StoreError
from learnagent.core.home import PRIVATE_DIR_MODE, create_private_file, make_private

BUSY_TIMEOUT_MS = 30_000


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("learnagent.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text()))
    return sorted(found)


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

    Raises sqlite3.Error when the check cannot run; `store_error` decides what that means.
    """
    uri = Path(path).resolve().as_uri() + "?mode=rw"  # never creates a file
    conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
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


def connect(path: Path) -> sqlite3.Connection:
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
        migrate(conn)
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
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception (Ctrl-C too). The write lock is taken
    up front, so a read-then-write inside is atomic against other processes. Inside another
    transaction it joins that one: the outer one commits or rolls back everything.
    (`Store.transaction` is this on the store's connection.)"""
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


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen; returns the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, _name, sql in migrations():
        if number <= current:
            continue
        with transaction(conn):
            # re-check inside the write lock: another process may have migrated meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] < number:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
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
