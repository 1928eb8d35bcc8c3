"""infra.sqlite_db: WAL, NORMAL sync, immediate transactions, a held lock as StorageUnavailable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from infra.errors import StorageUnavailable
from infra.sqlite_db import SQLiteDatabase


def _count(db: SQLiteDatabase) -> int:
    with db.reading() as conn:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


@pytest.fixture
def db(tmp_path: Path) -> SQLiteDatabase:
    """A new database file (in a directory that does not exist yet) with one table."""
    database = SQLiteDatabase(tmp_path / "not-yet" / "x.db", busy_timeout_s=0.2)
    with database.transaction() as conn:
        conn.execute("CREATE TABLE t (v INTEGER NOT NULL)")
    return database


def test_opens_in_wal_with_normal_sync(db: SQLiteDatabase) -> None:
    with db.reading() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 200


def test_a_transaction_commits_or_rolls_back_whole(db: SQLiteDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("INSERT INTO t VALUES (NULL)")
    assert _count(db) == 1
    assert not db.conn.in_transaction


def test_a_write_lock_held_past_the_busy_timeout_is_storage_unavailable(
    db: SQLiteDatabase,
) -> None:
    other = SQLiteDatabase(db.path, busy_timeout_s=0.2)
    with other.transaction() as holder:
        holder.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(StorageUnavailable, match="database is locked"), db.transaction():
            pytest.fail("the write lock is held elsewhere")
        # Readers never wait for the writer in WAL mode.
        assert _count(db) == 0
    # Once the other writer is done, the same call succeeds.
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    assert _count(db) == 2
    other.close()


def test_memory_database_works_without_wal() -> None:
    db = SQLiteDatabase(":memory:")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE t (v INTEGER NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert _count(db) == 1
    db.close()
