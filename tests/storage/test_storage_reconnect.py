"""Stores outlive their database's outages: typed StorageUnavailable, then reconnection."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.telemetry import StorageUnavailable, StoreOutcome, timescale_schema
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import TimescaleStore
from tests.servers import PrivatePostgres, starts_server
from tests.storage.factories import batches


@pytest.fixture(scope="module")
@starts_server
def restartable() -> Iterator[PrivatePostgres]:
    """A cluster of this module's own, so stopping it disturbs no other test."""
    server = PrivatePostgres(durable=True)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def server(restartable: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """The module's cluster, up again after each test whatever the test did to it."""
    yield restartable
    if not restartable.running:
        restartable.start()


@pytest.fixture
def store(server: PrivatePostgres) -> Iterator[TimescaleStore]:
    """A migrated TimescaleStore on a fresh database of the restartable cluster."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    admin = server.dsn.replace("dbname=vigil", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = server.dsn.replace("dbname=vigil", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    with TimescaleStore(dsn) as opened:
        opened.migrate()
        yield opened


@pytest.mark.services
def test_the_first_call_after_a_server_restart_works(
    store: TimescaleStore, server: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = batches(2, 25)
    store.store_batches([first])
    server.kill()
    server.start()

    def no_migration(conn: object) -> frozenset[str]:
        raise AssertionError("reconnecting must not migrate again")

    monkeypatch.setattr(timescale_schema, "migrate", no_migration)
    # The old connection is dead; the store finds out, reconnects and stores in the same call.
    assert store.store_batches([second]) == StoreOutcome(readings_inserted=25, batches_new=1)
    assert store.reading_count() == 50


@pytest.mark.services
def test_calls_during_an_outage_raise_storage_unavailable_then_recover(
    store: TimescaleStore, server: PrivatePostgres
) -> None:
    stored, held = batches(2, 25)
    store.store_batches([stored])
    server.kill()
    with pytest.raises(StorageUnavailable) as raised:
        store.store_batches([held])
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    with pytest.raises(StorageUnavailable):  # reconnecting fails alike while it is down
        store.reading_count()
    with pytest.raises(StorageUnavailable):
        store.store_dead_letters([])
    server.start()
    # The write that failed is retried as is: nothing was half-done, nothing doubles.
    assert store.store_batches([stored, held]) == StoreOutcome(
        readings_inserted=25, batches_new=1, batches_duplicate=1
    )
    assert store.reading_checksum()[0] == 50


@pytest.mark.services
def test_a_server_that_is_down_at_open_raises_storage_unavailable(
    server: PrivatePostgres,
) -> None:
    server.kill()
    with pytest.raises(StorageUnavailable):
        TimescaleStore(server.dsn)


@pytest.mark.services
def test_statement_errors_stay_what_they_are_and_keep_the_connection(
    store: TimescaleStore,
) -> None:
    store.store_batches(batches(1, 10))
    with pytest.raises(psycopg.errors.UndefinedTable):
        store._run(lambda conn: conn.execute("SELECT * FROM no_such_table"))
    assert store.reading_count() == 10


@pytest.mark.services
def test_a_closed_store_stays_closed(store: TimescaleStore) -> None:
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.reading_count()


def test_sqlite_locked_beyond_its_busy_timeout_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "vigil.db"
    with SQLiteStore(str(path), busy_timeout_s=0.1) as store:
        store.migrate()
        other = sqlite3.connect(path, isolation_level=None)
        with contextlib.closing(other):
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            with pytest.raises(StorageUnavailable):
                store.store_batches(batches(1, 10))
            other.execute("ROLLBACK")
        assert store.store_batches(batches(1, 10)).readings_inserted == 10
