"""TimescaleDB specifics beyond the shared contract: hypertable layout, licence, atomicity."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from contract import Reading
from infra.telemetry import StoreOutcome
from infra.telemetry.base import BadBatch
from infra.telemetry.timescale import TimescaleStore
from tests.storage.factories import T0_US, batch, batches, reading

DAY_US = 86_400_000_000


@pytest.fixture
def store(timescale_dsn: str) -> Iterator[TimescaleStore]:
    """A migrated TimescaleStore on a fresh database."""
    with TimescaleStore(timescale_dsn) as opened:
        opened.migrate()
        yield opened


def test_readings_is_a_hypertable_with_daily_chunks(
    store: TimescaleStore, timescale_dsn: str
) -> None:
    with psycopg.connect(timescale_dsn) as conn:
        row = conn.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'readings'"
        ).fetchone()
    assert row == ("ts", timedelta(days=1))


def test_readings_land_in_one_chunk_per_day(store: TimescaleStore, timescale_dsn: str) -> None:
    days = [Reading("patch-1", "battery", 50.0, "%", T0_US + d * DAY_US, d) for d in range(3)]
    store.store_batches([batch(0, days)])
    with psycopg.connect(timescale_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
    assert row == (3,)


def test_unique_key_is_enforced_by_the_database(store: TimescaleStore, timescale_dsn: str) -> None:
    store.store_batches([batch(0, [reading(1)])])
    with psycopg.connect(timescale_dsn) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO readings (ts, device_id, metric, value, unit, seq, gateway_id, batch_seq)"
            " SELECT ts, device_id, metric, value, unit, seq, 'other', 9 FROM readings"
        )


# What the Apache-only build answers (docs/deployment.md). The tests' TimescaleDB is built from
# Debian's 2.19.3+dfsg source, whose Files-Excluded drops tsl/ (the Timescale-licence code:
# compression, continuous aggregates, the policy jobs), so no other build is possible from it.
APACHE_REFUSAL = 'functionality not supported under the current "apache" license'


def test_apache_build_refuses_compression_and_continuous_aggregates(
    store: TimescaleStore, timescale_dsn: str
) -> None:
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        license_row = conn.execute("SHOW timescaledb.license").fetchone()
        assert license_row is not None
        if license_row[0] == "timescale":
            pytest.skip("this server has the community licence")
        assert store.features == frozenset()  # migrate() skipped both, and said so
        views = conn.execute("SELECT count(*) FROM timescaledb_information.continuous_aggregates")
        assert views.fetchone() == (0,)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=APACHE_REFUSAL):
            conn.execute("ALTER TABLE readings SET (timescaledb.compress)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=APACHE_REFUSAL):
            conn.execute(
                "CREATE MATERIALIZED VIEW h WITH (timescaledb.continuous) AS SELECT"
                " time_bucket(INTERVAL '1 hour', ts) AS b, avg(value) FROM readings GROUP BY b"
            )
        # The licence cannot be switched on: the module that would implement it is not built.
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert version is not None
        missing = f'could not access file "$libdir/timescaledb-tsl-{version[0]}"'
        with pytest.raises(psycopg.errors.UndefinedFile, match=re.escape(missing)):
            conn.execute(f"LOAD '$libdir/timescaledb-tsl-{version[0]}'")


def test_retention_drops_whole_chunks_on_the_apache_build(
    store: TimescaleStore, timescale_dsn: str
) -> None:
    days = [Reading("patch-1", "battery", 50.0, "%", T0_US + d * DAY_US, d) for d in range(3)]
    store.store_batches([batch(0, days)])
    pruned = store.prune_readings(T0_US + 2 * DAY_US)  # drop_chunks: in the Apache build
    with psycopg.connect(timescale_dsn) as conn:
        chunks = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
    assert pruned.how == "drop_chunks" and pruned.rows == 2 and chunks == (1,)
    assert [r.seq for r in store.fetch_readings()] == [2]


def test_a_failing_call_stores_nothing_and_the_store_recovers(store: TimescaleStore) -> None:
    good = batches(2, 50)
    poisoned = batch(9, [reading(5000), Reading("bad\x00id", "battery", 1.0, "%", T0_US, 1)])
    # Bad data is BadBatch (poison, never an outage), naming the batches and the cause.
    with pytest.raises(BadBatch, match="'gw-1'/9 cannot be stored: CharacterNotInRepertoire"):
        store.store_batches([*good, poisoned])
    assert store.reading_count() == 0
    assert store.store_batches(good) == StoreOutcome(readings_inserted=100, batches_new=2)


def test_microsecond_timestamps_round_trip_exactly(store: TimescaleStore) -> None:
    odd = [Reading("patch-1", "battery", 1.0, "%", 1_767_225_600_123_457 + i, i) for i in range(3)]
    store.store_batches([batch(0, odd)])
    assert store.fetch_readings() == odd
