"""One way to open and write an SQLite file: WAL, busy timeout, NORMAL sync, immediate writes.

Every SQLite store (telemetry, gateway outbox, service desk) opens its file with
``SQLiteDatabase`` and writes inside ``db.transaction()``::

    db = SQLiteDatabase("var/vigil.db")
    with db.transaction() as conn:      # BEGIN IMMEDIATE … COMMIT, ROLLBACK on any error
        conn.execute("INSERT …")
    with db.reading() as conn:          # the lock only: a consistent read, no transaction
        rows = conn.execute("SELECT …").fetchall()

A write lock another process holds for longer than the busy timeout ("database is locked")
raises ``StorageUnavailable``: nothing of ours was written, and the same call may succeed
later, so the consume loop holds the message. Every other error is the statement's own.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.errors import StorageUnavailable

MEMORY = ":memory:"


def connect(path: str | Path, *, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with ``synchronous=NORMAL`` and a busy timeout."""
    if str(path) != MEMORY:
        # Settings point at paths like var/vigil.db on hosts where var/ may not exist yet.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode (isolation_level=None) so transactions are exactly our BEGIN/COMMIT;
    # check_same_thread off because asyncio.to_thread runs calls on different pool threads.
    conn = sqlite3.connect(
        str(path), isolation_level=None, timeout=busy_timeout_s, check_same_thread=False
    )
    try:
        with _locked_is_unavailable():
            if str(path) != MEMORY:
                # Readers never block the writer, nor the writer readers.
                conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode and much faster than
            # FULL; only a power loss may forget the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def is_locked(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's busy/locked error rather than a failed statement."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(exc)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception; a busy database is unavailable.

    IMMEDIATE takes the write lock up front, so a concurrent writer waits for our commit (up to
    the busy timeout) instead of failing half way through with a deadlock.
    """
    with _locked_is_unavailable():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (busy) leaves the transaction open; one rolled back by SQLite
            # itself does not, and a second ROLLBACK would raise.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class SQLiteDatabase:
    """One connection shared between threads under a lock, with ``transaction()`` for writes."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self.conn = connect(path, busy_timeout_s=busy_timeout_s)
        self.lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock inside BEGIN IMMEDIATE … COMMIT (see ``transaction``)."""
        with self.lock, transaction(self.conn) as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, outside any transaction, for reads."""
        with self.lock, _locked_is_unavailable():
            yield self.conn

    def close(self) -> None:
        """Close the connection; the database object is unusable afterwards."""
        with self.lock:
            self.conn.close()


@contextmanager
def _locked_is_unavailable() -> Iterator[None]:
    """Turn SQLite's busy/locked error into ``StorageUnavailable``; others pass unchanged."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        # Another connection held the lock for longer than the busy timeout: the same call can
        # succeed once that writer is done.
        if is_locked(exc):
            raise StorageUnavailable(f"SQLite database is locked: {exc}") from exc
        raise
