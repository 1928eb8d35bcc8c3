"""TimescaleDB schema: tables, the readings hypertable, and the licence-dependent extras."""

from __future__ import annotations

import contextlib
import logging

import psycopg
from psycopg.rows import TupleRow

from infra.telemetry import baseline_sql

log = logging.getLogger(__name__)

# Serialises concurrent migrate() calls from several workers starting at once.
_MIGRATE_LOCK_KEY = 0x76_69_67_69_6C  # "vigil"

_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS readings (
        ts timestamptz NOT NULL,
        device_id text NOT NULL,
        metric text NOT NULL,
        value double precision NOT NULL,
        unit text NOT NULL,
        seq bigint NOT NULL,
        gateway_id text NOT NULL,
        batch_seq bigint NOT NULL,
        CONSTRAINT readings_key UNIQUE (device_id, metric, seq, ts)
    )
    """,
    # The unique index leads with (device_id, metric) and chunk exclusion on ts prunes the
    # rest, so per-device queries need no second index that every COPY would have to maintain.
    "SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE)",
    """
    CREATE TABLE IF NOT EXISTS ingested_batches (
        gateway_id text NOT NULL,
        batch_seq bigint NOT NULL,
        reading_count integer NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gateway_id, batch_seq)
    )
    """,
    # Retention forgets claims by age (infra.telemetry.timescale.TimescaleStore.prune_batch_claims).
    "CREATE INDEX IF NOT EXISTS ingested_batches_at ON ingested_batches (ingested_at)",
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at timestamptz NOT NULL,
        source text NOT NULL,
        reason text NOT NULL,
        payload bytea NOT NULL,
        gateway_id text,
        batch_seq bigint
    )
    """,
    "CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at DESC)",
    """
    CREATE TABLE IF NOT EXISTS alerts (
        device_id text NOT NULL,
        rule_id text NOT NULL,
        severity smallint NOT NULL,
        transition text NOT NULL,
        at timestamptz NOT NULL,
        message text NOT NULL,
        evidence jsonb NOT NULL,
        published_at timestamptz,
        PRIMARY KEY (device_id, rule_id, transition, at)
    )
    """,
)
# Alerts tables made before the outbox lack published_at (NULL until the broker acknowledged
# the event). Their rows were published, or given up on, by the code of the time: they are
# marked published so that an upgrade does not replay the whole alert history.
_HAS_PUBLISHED_AT = """
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'alerts'
      AND column_name = 'published_at'
"""
_ADD_PUBLISHED_AT = (
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS published_at timestamptz",
    "UPDATE alerts SET published_at = now() WHERE published_at IS NULL",
)
_UNPUBLISHED_INDEX = (
    "CREATE INDEX IF NOT EXISTS alerts_unpublished ON alerts (at) WHERE published_at IS NULL"
)
# Alert events in time order, for keyset pages of every device's alerts.
_ALERTS_AT_INDEX = (
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at, device_id, rule_id, transition)"
)
# Each device's alert events in time order, for pages of a site's (or one device's) alerts.
_ALERTS_DEVICE_AT_INDEX = """
    CREATE INDEX IF NOT EXISTS alerts_device_at ON alerts (device_id, at, rule_id, transition)
"""

_COMPRESSION_ENABLED = """
    SELECT compression_enabled FROM timescaledb_information.hypertables
    WHERE hypertable_name = 'readings'
"""
_ENABLE_COMPRESSION = """
    ALTER TABLE readings SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'device_id, metric',
        timescaledb.compress_orderby = 'ts, seq'
    )
"""
_COMPRESSION_POLICY = (
    "SELECT add_compression_policy('readings', INTERVAL '7 days', if_not_exists => TRUE)"
)
_HOURLY_EXISTS = """
    SELECT 1 FROM timescaledb_information.continuous_aggregates WHERE view_name = 'readings_hourly'
"""
_CREATE_HOURLY = """
    CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, device_id, metric,
           min(value) AS min, avg(value) AS avg, max(value) AS max, count(*) AS count
    FROM readings
    GROUP BY bucket, device_id, metric
    WITH NO DATA
"""
# Refresh stays well inside the 7-day uncompressed window.
_HOURLY_POLICY = """
    SELECT add_continuous_aggregate_policy('readings_hourly',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE)
"""

COMPRESSION = "compression"
HOURLY_AGGREGATE = "continuous_aggregate"


def migrate(conn: psycopg.Connection[TupleRow]) -> frozenset[str]:
    """Create the schema on an autocommit connection; return the optional features in place."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
        for statement in _TABLES:
            conn.execute(statement)
        if conn.execute(_HAS_PUBLISHED_AT).fetchone() is None:
            for statement in _ADD_PUBLISHED_AT:
                conn.execute(statement)
        conn.execute(_UNPUBLISHED_INDEX)
        conn.execute(_ALERTS_AT_INDEX)
        conn.execute(_ALERTS_DEVICE_AT_INDEX)
        conn.execute(baseline_sql.POSTGRES_TABLE)
        conn.execute(baseline_sql.AT_INDEX)
    license_row = conn.execute("SHOW timescaledb.license").fetchone()
    license_name = str(license_row[0]) if license_row else "apache"
    if license_name != "timescale":
        log.warning(
            "TimescaleDB licence is %r: no compression or continuous aggregates; "
            "readings stay uncompressed and readings_hourly is not created",
            license_name,
        )
        return frozenset()
    _migrate_community(conn)
    return frozenset({COMPRESSION, HOURLY_AGGREGATE})


def _migrate_community(conn: psycopg.Connection[TupleRow]) -> None:
    """Compression and the hourly continuous aggregate, which need the Timescale licence."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
        row = conn.execute(_COMPRESSION_ENABLED).fetchone()
        # Re-running ALTER … SET (timescaledb.compress) fails once chunks are compressed.
        if not (row and row[0]):
            conn.execute(_ENABLE_COMPRESSION)
        conn.execute(_COMPRESSION_POLICY)
    # CREATE MATERIALIZED VIEW … WITH (timescaledb.continuous) refuses to run in a transaction,
    # so it goes out in autocommit; a racing worker's duplicate creation fails harmlessly.
    if conn.execute(_HOURLY_EXISTS).fetchone() is None:
        with contextlib.suppress(psycopg.errors.DuplicateTable):
            conn.execute(_CREATE_HOURLY)
    conn.execute(_HOURLY_POLICY)
