"""TimescaleDB backend: readings in a hypertable, written by binary COPY in one transaction."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from contract import AlertEvent, AlertTransition, Batch, Reading, Severity, WoundBaseline
from contract.batch_columns import as_columnar
from contract.lazy_batch import reading_count
from infra.postgres import PgConnection, Work
from infra.retention import Pruned
from infra.telemetry import baseline_sql, timescale_schema
from infra.telemetry.base import (
    AlertKey,
    BadBatch,
    Bucket,
    DeadLetter,
    StoreContext,
    StoreOutcome,
    check_bucket_seconds,
    storable_letter,
)
from infra.telemetry.claims import claim_order, reading_total
from infra.telemetry.copy_columns import Chunk, copy_chunks
from infra.time_us import datetime_from_us

log = logging.getLogger(__name__)

READING_COLUMNS = "ts, device_id, metric, value, unit, seq, gateway_id, batch_seq"
READING_TYPES = ["timestamptz", "text", "text", "float8", "text", "int8", "text", "int8"]

_CLAIM = """
    INSERT INTO ingested_batches (gateway_id, batch_seq, reading_count)
    SELECT * FROM unnest(%s::text[], %s::bigint[], %s::integer[])
    ON CONFLICT DO NOTHING
    RETURNING gateway_id, batch_seq
"""
_COPY_READINGS = f"COPY readings ({READING_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS readings_staging (LIKE readings) ON COMMIT DELETE ROWS"
_COPY_STAGING = f"COPY readings_staging ({READING_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_MERGE_STAGING = f"""
    INSERT INTO readings ({READING_COLUMNS})
    SELECT {READING_COLUMNS} FROM readings_staging
    ON CONFLICT DO NOTHING
"""
_INSERT_DEAD_LETTER = """
    INSERT INTO dead_letters (received_at, source, reason, payload, gateway_id, batch_seq)
    VALUES (%s, %s, %s, %s, %s, %s)
"""
_INSERT_ALERTS = """
    INSERT INTO alerts (device_id, rule_id, severity, transition, at, message, evidence)
    SELECT d, r, s, t, a, m, e::jsonb
    FROM unnest(%s::text[], %s::text[], %s::smallint[], %s::text[], %s::timestamptz[],
                %s::text[], %s::text[]) AS u(d, r, s, t, a, m, e)
    ON CONFLICT DO NOTHING
"""
_US = "(extract(epoch FROM {}) * 1000000)::bigint"
_BUCKETED = f"""
    SELECT {_US.format("b")}, min(value), avg(value), max(value), count(*)
    FROM (
        SELECT time_bucket(%(width)s, ts, origin => '1970-01-01 00:00:00+00'::timestamptz) AS b,
               value
        FROM readings
        WHERE device_id = %(device_id)s AND metric = %(metric)s
          AND ts >= %(since)s AND ts < %(until)s
    ) AS bucketed
    GROUP BY b ORDER BY b
"""
_SELECT_READINGS = f"SELECT device_id, metric, value, unit, {_US.format('ts')}, seq FROM readings"
# Each optional filter is a fixed fragment; only their values come from the caller.
_FILTERS = {
    "device_id": sql.SQL("device_id = %(device_id)s"),
    "metric": sql.SQL("metric = %(metric)s"),
    "since_us": sql.SQL("ts >= %(since_us)s"),
    "until_us": sql.SQL("ts < %(until_us)s"),
}
_SELECT_ALERTS = f"""
    SELECT device_id, rule_id, severity, transition, {_US.format("at")}, message, evidence
    FROM alerts
    WHERE (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
    ORDER BY at, device_id, rule_id, transition
"""
# The latest reading per (device, metric): each device's own readings since the cutoff (its
# slice of the key index), newest first per metric. Device by device, so each sort is a few
# dozen rows, not one sort of every device's window (a 10,000-patch ward: 300,000 rows).
_LATEST = f"""
    SELECT l.device_id, l.metric, l.value, l.unit, {_US.format("l.ts")}, l.seq
    FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS d(id, n) CROSS JOIN LATERAL (
        SELECT DISTINCT ON (metric) device_id, metric, value, unit, ts, seq
        FROM readings
        WHERE device_id = d.id AND ts >= coalesce(%(since)s::timestamptz, '-infinity')
        ORDER BY metric, ts DESC, seq DESC
    ) AS l
    ORDER BY d.n, l.metric
"""
_SELECT_EVENTS = f"""
    SELECT device_id, rule_id, severity, transition, {_US.format("at")}, message, evidence
    FROM alerts"""
# Pages of alert events in time order after a keyset position. Every bound is a plain range on
# ``at`` (NULL: unbounded) so that it stays an index condition in the generic plan psycopg's
# prepared statements come to use; the row comparison then only skips the position's instant.
_PAGE_BOUNDS = """
      at >= greatest(coalesce(%(after_at)s::timestamptz, '-infinity'),
                     coalesce(%(since)s::timestamptz, '-infinity'))
      AND at < coalesce(%(until)s::timestamptz, 'infinity')
      AND (%(after_at)s::timestamptz IS NULL
           OR (at, device_id, rule_id, transition)
              > (%(after_at)s, %(after_device)s, %(after_rule)s, %(after_transition)s))
"""
# Every device's: the time index, read from the position on.
_ALERT_PAGE_ALL = f"""{_SELECT_EVENTS}
    WHERE {_PAGE_BOUNDS}
    ORDER BY at, device_id, rule_id, transition
    LIMIT %(limit)s
"""
# Some devices' (a site's): at most a page from each device's own time index, then the first
# page of those, so the work follows the devices and the page, not the network's alert count.
_ALERT_PAGE_OF = f"""
    SELECT e.* FROM unnest(%(ids)s::text[]) AS d(id) CROSS JOIN LATERAL (
        SELECT device_id, rule_id, severity, transition, {_US.format("at")} AS at_us, message,
            evidence
        FROM alerts
        WHERE device_id = d.id AND {_PAGE_BOUNDS}
        ORDER BY at, rule_id, transition
        LIMIT %(limit)s
    ) AS e
    ORDER BY e.at_us, e.device_id, e.rule_id, e.transition
    LIMIT %(limit)s
"""
_ACTIVE = f"""
    SELECT * FROM (
        SELECT DISTINCT ON (device_id, rule_id) device_id, rule_id, severity, transition,
            {_US.format("at")}, message, evidence
        FROM alerts WHERE device_id = ANY(%s)
        ORDER BY device_id, rule_id, at DESC
    ) AS last WHERE transition <> 'cleared'
"""
_SELECT_UNPUBLISHED = f"""
    SELECT device_id, rule_id, severity, transition, {_US.format("at")}, message, evidence
    FROM alerts
    WHERE published_at IS NULL
    ORDER BY at, device_id, rule_id, transition
    LIMIT %s
"""
# The first acknowledgement's time is kept; a repeat publication changes nothing.
_MARK_PUBLISHED = """
    UPDATE alerts SET published_at = now()
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[]) AS u(d, r, t, a)
    WHERE alerts.device_id = u.d AND alerts.rule_id = u.r AND alerts.transition = u.t
      AND alerts.at = u.a AND alerts.published_at IS NULL
"""
_SELECT_DEAD_LETTER = f"""
    SELECT {_US.format("received_at")}, source, reason, payload, gateway_id, batch_seq, id
    FROM dead_letters"""
_SELECT_DEAD_LETTERS = (
    f"{_SELECT_DEAD_LETTER} ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s"
)
_SELECT_DEAD_LETTER_BY_ID = f"{_SELECT_DEAD_LETTER} WHERE id = %s"
# drop_chunks drops the chunks lying wholly before the cutoff; the rows they hold are the rows
# before the latest end among them (chunks of one time dimension do not overlap).
_DROPPABLE_END = """
    SELECT max(c.range_end)
    FROM show_chunks('readings', older_than => %(cutoff)s::timestamptz) AS s(chunk)
    JOIN timescaledb_information.chunks AS c
      ON s.chunk = (quote_ident(c.chunk_schema) || '.' || quote_ident(c.chunk_name))::regclass
"""
_DROP_CHUNKS = "SELECT drop_chunks('readings', older_than => %(cutoff)s::timestamptz)"
# The hourly aggregate (Timescale licence only) keeps per-device figures derived from readings:
# they go with the readings.
_HOURLY_EXISTS = """
    SELECT 1 FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = current_schema() AND view_name = 'readings_hourly'
"""
_DROP_HOURLY = "SELECT drop_chunks('readings_hourly', older_than => %(cutoff)s::timestamptz)"
# kind → (table, indexed time column, the cutoff in that column's type) of the plain tables
# pruned by DELETE.
_PRUNED_BY_DELETE: dict[str, tuple[str, str, Callable[[int], object]]] = {
    "dead_letters": ("dead_letters", "received_at", datetime_from_us),
    "batch_claims": ("ingested_batches", "ingested_at", datetime_from_us),
    "baselines": ("baselines", "at_us", int),  # microseconds of the newest reading
}
# Two writers whose batches share readings can still deadlock on the unique index; the loser's
# transaction is rolled back whole, so retrying it is safe.
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_ATTEMPTS = 5
# What a batch's data (not the server's state) can fail with: a NUL in a text (psycopg's own
# DataError, or SQLSTATE 22021 from COPY), a timestamp past year 9999 or before year 1
# (OverflowError converting it), an integer beyond int8 (OverflowError dumping it, 22003 on the
# server), a lone surrogate (UnicodeEncodeError), any other class 22 or 23 SQLSTATE.
_BAD_DATA = (psycopg.DataError, psycopg.IntegrityError, OverflowError, ValueError)
T = TypeVar("T")


class TimescaleStore(StoreContext):
    """A ReadingStore on PostgreSQL with TimescaleDB, over one connection of its own.

    A lost connection (server restart, failover, network) is reopened on the next call; a call
    that cannot reach the server raises ``StorageUnavailable``. Migrations are not re-run.
    """

    def __init__(self, conninfo: str) -> None:
        self._db = PgConnection(conninfo, name="PostgreSQL (telemetry)")
        self.features: frozenset[str] = frozenset()

    def migrate(self) -> None:
        """Create the schema if it is missing; safe to call any number of times."""
        self.features = self._run(timescale_schema.migrate)

    def store_batches(self, batches: Sequence[Batch]) -> StoreOutcome:
        """Store all ``batches`` in one transaction, skipping batches and readings already kept.

        Raises ``BadBatch`` (nothing stored) when PostgreSQL cannot take a value of one of them.
        """
        ordered = claim_order(batches)

        def store(conn: psycopg.Connection[TupleRow]) -> StoreOutcome:
            attempt = 1
            while True:
                try:
                    return self._store(conn, ordered, len(batches))
                except _RETRYABLE:
                    if attempt == _ATTEMPTS:
                        raise
                    time.sleep(0.01 * attempt)
                    attempt += 1

        try:
            # Safe to repeat after a lost connection, even one lost during COMMIT: the batch
            # claims make a committed batch a duplicate the second time.
            return self._run(store)
        except _BAD_DATA as exc:
            # The transaction is rolled back and the connection stays usable; the same batches
            # would fail the same way on every retry, so this is no outage.
            raise BadBatch.of(ordered, exc) from exc

    def _store(
        self, conn: psycopg.Connection[TupleRow], ordered: list[Batch], offered: int
    ) -> StoreOutcome:
        """One attempt at the write transaction."""
        with conn.transaction(), conn.cursor() as cur:
            # A concurrent writer claiming the same batch blocks on its primary key until we
            # commit, then sees the conflict and skips it: exactly one copy either way.
            cur.execute(
                _CLAIM,
                (
                    [b.gateway_id for b in ordered],
                    [b.batch_seq for b in ordered],
                    [reading_count(b) for b in ordered],
                ),
            )
            claimed_keys = set(cur.fetchall())
            claimed = [b for b in ordered if (b.gateway_id, b.batch_seq) in claimed_keys]
            offered_readings = reading_total(claimed)
            inserted = _insert_readings(conn, cur, claimed) if offered_readings else 0
        return StoreOutcome(
            readings_inserted=inserted,
            batches_new=len(claimed),
            batches_duplicate=offered - len(claimed),
            readings_duplicate=offered_readings - inserted,
        )

    def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Append dead letters."""
        params = [
            (
                datetime_from_us(d.received_at_us),
                d.source,
                d.reason,
                d.payload,
                d.gateway_id,
                d.batch_seq,
            )
            for d in map(storable_letter, letters)
        ]

        def store(conn: psycopg.Connection[TupleRow]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_INSERT_DEAD_LETTER, params)

        # Appends are not idempotent: a connection lost during COMMIT leaves it unknown whether
        # they are stored, so that is the caller's call, not a silent second copy.
        self._run(store, retry=False)

    def store_alert_events(self, events: Sequence[AlertEvent]) -> int:
        """Store alert events, ignoring ones already stored; return how many were new."""
        columns = (
            [e.device_id for e in events],
            [e.rule_id for e in events],
            [int(e.severity) for e in events],
            [e.transition.value for e in events],
            [datetime_from_us(e.at_us) for e in events],
            [e.message for e in events],
            [json.dumps(e.evidence) for e in events],
        )

        def store(conn: psycopg.Connection[TupleRow]) -> int:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_INSERT_ALERTS, columns)
                return cur.rowcount

        return self._run(store)

    def unpublished_alert_events(self, limit: int = 1000) -> list[AlertEvent]:
        """Up to ``limit`` stored alert events not yet marked published, oldest first."""
        rows = self._run(lambda conn: conn.execute(_SELECT_UNPUBLISHED, (limit,)).fetchall())
        return _alert_events(rows)

    def mark_alerts_published(self, events: Sequence[AlertEvent]) -> None:
        """Mark stored alert events published (by key); repeats and unknown events are no-ops."""
        if not events:
            return
        columns = (
            [e.device_id for e in events],
            [e.rule_id for e in events],
            [e.transition.value for e in events],
            [datetime_from_us(e.at_us) for e in events],
        )

        def mark(conn: psycopg.Connection[TupleRow]) -> None:
            with conn.transaction():
                conn.execute(_MARK_PUBLISHED, columns)

        # Safe to repeat after a lost connection: marking is idempotent.
        self._run(mark)

    def fetch_readings(
        self,
        *,
        device_id: str | None = None,
        metric: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        """Stored readings matching every given filter, ordered by timestamp then seq."""
        params: dict[str, object] = {
            "device_id": device_id,
            "metric": metric,
            "since_us": None if since_us is None else datetime_from_us(since_us),
            "until_us": None if until_us is None else datetime_from_us(until_us),
        }
        where = [_FILTERS[name] for name, value in params.items() if value is not None]
        query: sql.Composable = sql.SQL(_SELECT_READINGS)
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query += sql.SQL(" ORDER BY ts, seq, device_id, metric")
        if limit is not None:
            query += sql.SQL(" LIMIT %(limit)s")
            params["limit"] = limit
        rows = self._run(lambda conn: conn.execute(query, params).fetchall())
        return [Reading(*row) for row in rows]

    def bucketed(
        self, device_id: str, metric: str, bucket_seconds: int, since_us: int, until_us: int
    ) -> list[Bucket]:
        """Min, avg, max and count of one device's metric per epoch-aligned bucket, in order."""
        check_bucket_seconds(bucket_seconds)
        params = {
            "width": datetime_from_us(bucket_seconds * 1_000_000) - datetime_from_us(0),
            "device_id": device_id,
            "metric": metric,
            "since": datetime_from_us(since_us),
            "until": datetime_from_us(until_us),
        }
        rows = self._run(lambda conn: conn.execute(_BUCKETED, params).fetchall())
        return [Bucket(*row) for row in rows]

    def fetch_alert_events(self, device_id: str | None = None) -> list[AlertEvent]:
        """Stored alert events, optionally for one device, ordered by time."""
        rows = self._run(
            lambda conn: conn.execute(_SELECT_ALERTS, {"device_id": device_id}).fetchall()
        )
        return _alert_events(rows)

    def latest_by_device(
        self, device_ids: Sequence[str], since_us: int | None = None
    ) -> list[Reading]:
        """The latest reading of each metric of each device (at or after ``since_us``)."""
        params = {
            "ids": sorted(set(device_ids)),  # in device order, each once
            "since": None if since_us is None else datetime_from_us(since_us),
        }
        rows = self._run(_without_jit(_LATEST, params))
        return [Reading(*row) for row in rows]

    def alert_page(
        self,
        device_ids: Sequence[str] | None,
        *,
        after: AlertKey | None = None,
        limit: int = 100,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[AlertEvent]:
        """Alert events of ``device_ids`` (None: all) in [since_us, until_us), in time order,
        after the key ``after``."""
        at, device, rule, transition = after or (None, None, None, None)
        params = {
            "ids": None if device_ids is None else sorted(set(device_ids)),
            "after_at": None if at is None else datetime_from_us(at),
            "after_device": device,
            "after_rule": rule,
            "after_transition": transition,
            "limit": limit,
            "since": None if since_us is None else datetime_from_us(since_us),
            "until": None if until_us is None else datetime_from_us(until_us),
        }
        if device_ids is None:
            rows = self._run(lambda conn: conn.execute(_ALERT_PAGE_ALL, params).fetchall())
        else:
            rows = self._run(_without_jit(_ALERT_PAGE_OF, params))
        return _alert_events(rows)

    def active_alerts(self, device_ids: Sequence[str]) -> list[AlertEvent]:
        """The last event of each (device, rule) of ``device_ids`` whose alert is not cleared."""
        rows = self._run(_without_jit(_ACTIVE, (list(device_ids),)))
        return _alert_events(rows)

    def store_baselines(self, baselines: Sequence[WoundBaseline]) -> None:
        """Keep the latest of each (device, rule): newer rows replace older ones (one statement)."""
        if not baselines:
            return
        columns = baseline_sql.columns(baselines)

        def store(conn: psycopg.Connection[TupleRow]) -> None:
            conn.execute(baseline_sql.POSTGRES_UPSERT, columns)

        self._run(store)

    def baselines(self, device_ids: Sequence[str]) -> list[WoundBaseline]:
        """The stored baselines of ``device_ids``, ordered by device and rule: one query."""
        query = baseline_sql.POSTGRES_SELECT
        rows = self._run(lambda conn: conn.execute(query, (list(device_ids),)).fetchall())
        return baseline_sql.baselines_of(rows)

    def reading_count(self) -> int:
        """How many readings are stored."""
        return self._scalar("SELECT count(*) FROM readings")

    def reading_checksum(self) -> tuple[int, float]:
        """Count and sum of values of all stored readings, for reconciliation."""
        row = self._run(
            lambda conn: conn.execute(
                "SELECT count(*), coalesce(sum(value), 0.0) FROM readings"
            ).fetchone()
        )
        assert row is not None
        return int(row[0]), float(row[1])

    def dead_letter_count(self) -> int:
        """How many dead letters are stored."""
        return self._scalar("SELECT count(*) FROM dead_letters")

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters after skipping ``offset``, newest first."""
        rows = self._run(
            lambda conn: conn.execute(_SELECT_DEAD_LETTERS, (limit, offset)).fetchall()
        )
        return [_dead_letter(row) for row in rows]

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        """One stored dead letter by id, or None."""
        row = self._run(
            lambda conn: conn.execute(_SELECT_DEAD_LETTER_BY_ID, (letter_id,)).fetchone()
        )
        return None if row is None else _dead_letter(row)

    def prune_readings(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Drop the readings chunks wholly older than ``older_than_us`` (TimescaleDB's drop_chunks).

        drop_chunks is in the Apache build too, so this one path runs on either licence; a
        chunk (one day) straddling the cutoff stays until a later prune.
        """
        params = {"cutoff": datetime_from_us(older_than_us)}

        def prune(conn: psycopg.Connection[TupleRow]) -> tuple[int, str]:
            how, rows = "drop_chunks", 0
            with conn.transaction():
                row = conn.execute(_DROPPABLE_END, params).fetchone()
                end = None if row is None else row[0]
                if end is not None:
                    counted = conn.execute("SELECT count(*) FROM readings WHERE ts < %s", (end,))
                    rows = _count(counted.fetchone())
                    if not dry_run:
                        conn.execute(_DROP_CHUNKS, params)
                if conn.execute(_HOURLY_EXISTS).fetchone() is not None:
                    how += " (+readings_hourly)"
                    if not dry_run:
                        conn.execute(_DROP_HOURLY, params)
            return rows, how

        # Safe to repeat after a lost connection: dropping what is already gone does nothing.
        rows, how = self._run(prune)
        return Pruned("readings", rows, older_than_us, how)

    def prune_dead_letters(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than_us``."""
        return self._prune("dead_letters", older_than_us, dry_run)

    def prune_batch_claims(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Forget batches ingested before ``older_than_us``."""
        return self._prune("batch_claims", older_than_us, dry_run)

    def prune_baselines(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove wound baselines whose newest reading is older than ``older_than_us``."""
        return self._prune("baselines", older_than_us, dry_run)

    def _prune(self, kind: str, older_than_us: int, dry_run: bool) -> Pruned:
        """Count, or delete, the rows of a plain table older than the cutoff."""
        table, column, convert = _PRUNED_BY_DELETE[kind]
        what = sql.SQL("FROM {} WHERE {} < %s").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        cutoff = (convert(older_than_us),)

        def prune(conn: psycopg.Connection[TupleRow]) -> int:
            if dry_run:
                return _count(conn.execute(sql.SQL("SELECT count(*) ") + what, cutoff).fetchone())
            with conn.transaction():
                return conn.execute(sql.SQL("DELETE ") + what, cutoff).rowcount

        # Safe to repeat after a lost connection: deleting what is already gone does nothing.
        return Pruned(kind, self._run(prune), older_than_us)

    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""
        self._db.close()

    def _run(self, work: Work[T], *, retry: bool = True) -> T:
        """``work`` on a live connection; a lost server is StorageUnavailable."""
        return self._db.run(work, retry=retry)

    def _scalar(self, query: LiteralString) -> int:
        """The single integer a fixed query returns."""
        row = self._run(lambda conn: conn.execute(query).fetchone())
        assert row is not None
        return int(row[0])


def _without_jit(
    query: LiteralString, params: Sequence[object] | Mapping[str, object]
) -> Work[list[TupleRow]]:
    """The rows of ``query`` run with JIT compilation off.

    A query over a site's devices (thousands of index probes) is costed far above the JIT
    thresholds, yet each probe is cheap: compiling took longer (~0.25 s) than the work saved.
    """

    def rows(conn: psycopg.Connection[TupleRow]) -> list[TupleRow]:
        with conn.transaction():
            conn.execute("SET LOCAL jit = off")
            return conn.execute(query, params).fetchall()

    return rows


def _count(row: TupleRow | None) -> int:
    """The count(*) of a row a counting query always returns."""
    assert row is not None
    return int(row[0])


def _dead_letter(row: TupleRow) -> DeadLetter:
    """A DeadLetter from a row of ``_SELECT_DEAD_LETTER``."""
    at, source, reason, payload, gateway_id, batch_seq, letter_id = row
    return DeadLetter(at, source, reason, bytes(payload), gateway_id, batch_seq, letter_id)


def _alert_events(rows: Sequence[TupleRow]) -> list[AlertEvent]:
    """Alert events from rows of the alerts table's event columns, in table order.

    Built without validation: the columns are typed and were validated on the way in, and a
    site's board reads thousands.
    """
    return [
        AlertEvent.model_construct(
            device_id=d,
            rule_id=r,
            severity=Severity(s),
            transition=AlertTransition(t),
            at_us=at,
            message=m,
            evidence=ev,
        )
        for d, r, s, t, at, m, ev in rows
    ]


def _insert_readings(
    conn: psycopg.Connection[TupleRow], cur: psycopg.Cursor[TupleRow], claimed: list[Batch]
) -> int:
    """COPY readings straight into the hypertable, or merge via staging if some exist."""
    # Built once from the columns, in bulk; reused by the fallback.
    columnar = [c for c in map(as_columnar, claimed) if c is not None]
    chunks = copy_chunks(columnar) if len(columnar) == len(claimed) else None
    try:
        with conn.transaction():
            _copy(cur, _COPY_READINGS, claimed, chunks)
        return reading_total(claimed)
    except psycopg.errors.UniqueViolation:
        # The savepoint is rolled back. Some readings were stored before through another
        # batch, or repeat within this call; both are rare, so we do not pre-check for them.
        pass
    # The temp table belongs to the session: created again on a reopened connection.
    cur.execute(_STAGING)
    _copy(cur, _COPY_STAGING, claimed, chunks)
    cur.execute(_MERGE_STAGING)  # staging empties itself on commit (ON COMMIT DELETE ROWS)
    return cur.rowcount


def _copy(
    cur: psycopg.Cursor[TupleRow], statement: str, batches: list[Batch], chunks: list[Chunk] | None
) -> None:
    """COPY the pre-built stream if there is one, else the readings row by row."""
    if chunks is None:
        copy_readings(cur, statement, batches)
    else:
        write_copy(cur, statement, chunks)


def write_copy(cur: psycopg.Cursor[TupleRow], statement: str, chunks: Sequence[Chunk]) -> None:
    """Send a pre-built binary COPY stream (header, rows, trailer) with ``statement``."""
    with cur.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)


def copy_readings(cur: psycopg.Cursor[TupleRow], statement: str, batches: list[Batch]) -> None:
    """Binary-COPY every reading of ``batches`` row by row with ``write_row`` (the baseline)."""
    with cur.copy(statement) as copy:
        copy.set_types(READING_TYPES)
        for b in batches:
            gateway_id, batch_seq = b.gateway_id, b.batch_seq
            for r in b.readings:
                copy.write_row(
                    (
                        datetime_from_us(r.ts_us),
                        r.device_id,
                        r.metric,
                        r.value,
                        r.unit,
                        r.seq,
                        gateway_id,
                        batch_seq,
                    )
                )
