"""SQLite backend: one file in WAL mode, for a single gateway host, tests and demos.

Connections and transactions come from ``infra.sqlite_db``: a write lock held elsewhere past the
busy timeout is ``StorageUnavailable``; a batch SQLite cannot take is ``BadBatch``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence

from contract import AlertEvent, AlertTransition, Batch, Reading, Severity, WoundBaseline
from infra.retention import CHUNK_ROWS, Pruned, delete_in_chunks
from infra.sqlite_db import SQLiteDatabase
from infra.telemetry import baseline_sql
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

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS readings (
        ts_us INTEGER NOT NULL,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        seq INTEGER NOT NULL,
        gateway_id TEXT NOT NULL,
        batch_seq INTEGER NOT NULL
    )
    """,
    # Unique on the same columns as before, time before seq: a series' time range is one range
    # of the index. (Made by migrate(), which drops the old seq-first readings_key.)
    "CREATE INDEX IF NOT EXISTS readings_ts ON readings (ts_us)",
    """
    CREATE TABLE IF NOT EXISTS ingested_batches (
        gateway_id TEXT NOT NULL,
        batch_seq INTEGER NOT NULL,
        reading_count INTEGER NOT NULL,
        ingested_at_us INTEGER NOT NULL,
        PRIMARY KEY (gateway_id, batch_seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        received_at_us INTEGER NOT NULL,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB NOT NULL,
        gateway_id TEXT,
        batch_seq INTEGER
    )
    """,
    # The retention prunes look rows up by age (readings by readings_ts).
    "CREATE INDEX IF NOT EXISTS ingested_batches_at ON ingested_batches (ingested_at_us)",
    "CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at_us)",
    """
    CREATE TABLE IF NOT EXISTS alerts (
        device_id TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        severity INTEGER NOT NULL,
        transition TEXT NOT NULL,
        at_us INTEGER NOT NULL,
        message TEXT NOT NULL,
        evidence TEXT NOT NULL,
        published_at INTEGER,
        PRIMARY KEY (device_id, rule_id, transition, at_us)
    ) WITHOUT ROWID
    """,
)
# Alerts tables made before the outbox lack published_at (µs since the epoch, NULL until the
# broker acknowledged the event). Their rows were published, or given up on, by the code of the
# time: they are marked published so that an upgrade does not replay the whole alert history.
_ADD_PUBLISHED_AT = "ALTER TABLE alerts ADD COLUMN published_at INTEGER"
_BACKFILL_PUBLISHED_AT = "UPDATE alerts SET published_at = ?"
_UNPUBLISHED_INDEX = (
    "CREATE INDEX IF NOT EXISTS alerts_unpublished ON alerts (at_us) WHERE published_at IS NULL"
)
_LATER_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS readings_series_ts"
    " ON readings (device_id, metric, ts_us, seq)",
    "DROP INDEX IF EXISTS readings_key",
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at_us, device_id, rule_id, transition)",
)
_SELECT_UNPUBLISHED = """
    SELECT device_id, rule_id, severity, transition, at_us, message, evidence FROM alerts
    WHERE published_at IS NULL
    ORDER BY at_us, device_id, rule_id, transition
    LIMIT ?
"""
# The first acknowledgement's time is kept; a repeat publication changes nothing.
_MARK_PUBLISHED = """
    UPDATE alerts SET published_at = ?
    WHERE device_id = ? AND rule_id = ? AND transition = ? AND at_us = ? AND published_at IS NULL
"""

# ON CONFLICT DO NOTHING skips only what is already stored; OR IGNORE would also skip, silently,
# a row breaking NOT NULL (a NaN value is NULL to SQLite).
_CLAIM = """
    INSERT INTO ingested_batches (gateway_id, batch_seq, reading_count, ingested_at_us)
    VALUES (?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""
_INSERT_READING = """
    INSERT INTO readings (ts_us, device_id, metric, value, unit, seq, gateway_id, batch_seq)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""
# What the sqlite3 module or SQLite raise for a value they cannot store: an int beyond 64 bits
# (OverflowError), a lone surrogate (UnicodeEncodeError), NULL in a NOT NULL column, a type
# that cannot be bound. None of them is an outage.
_BAD_DATA = (
    OverflowError,
    ValueError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
)
_INSERT_DEAD_LETTER = """
    INSERT INTO dead_letters (received_at_us, source, reason, payload, gateway_id, batch_seq)
    VALUES (?, ?, ?, ?, ?, ?)
"""
_INSERT_ALERT = """
    INSERT OR IGNORE INTO alerts
        (device_id, rule_id, severity, transition, at_us, message, evidence)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_BUCKETED = """
    SELECT (ts_us / :width) * :width AS bucket, min(value), avg(value), max(value), count(*)
    FROM readings
    WHERE device_id = :device_id AND metric = :metric AND ts_us >= :since AND ts_us < :until
    GROUP BY bucket ORDER BY bucket
"""
# kind → (count, delete one chunk) of the rows older than a cutoff, each found through the index
# on its time; ingested_batches has no rowid, so its rows go by primary key.
PRUNES = {
    "readings": (
        "SELECT count(*) FROM readings WHERE ts_us < ?",
        "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings WHERE ts_us < ? LIMIT ?)",
    ),
    "dead_letters": (
        "SELECT count(*) FROM dead_letters WHERE received_at_us < ?",
        "DELETE FROM dead_letters WHERE id IN"
        " (SELECT id FROM dead_letters WHERE received_at_us < ? LIMIT ?)",
    ),
    "baselines": (
        "SELECT count(*) FROM baselines WHERE at_us < ?",
        "DELETE FROM baselines WHERE (device_id, rule_id) IN"
        " (SELECT device_id, rule_id FROM baselines WHERE at_us < ? LIMIT ?)",
    ),
    "batch_claims": (
        "SELECT count(*) FROM ingested_batches WHERE ingested_at_us < ?",
        "DELETE FROM ingested_batches WHERE (gateway_id, batch_seq) IN"
        " (SELECT gateway_id, batch_seq FROM ingested_batches WHERE ingested_at_us < ? LIMIT ?)",
    ),
}
# Each optional filter is a fixed fragment; only their values come from the caller.
_FILTERS = {
    "device_id": "device_id = :device_id",
    "metric": "metric = :metric",
    "since_us": "ts_us >= :since_us",
    "until_us": "ts_us < :until_us",
}


class SQLiteStore(StoreContext):
    """A ReadingStore on one SQLite database file (or ``:memory:``)."""

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0) -> None:
        self._db = SQLiteDatabase(path, busy_timeout_s=busy_timeout_s)
        self.prune_chunk_rows = CHUNK_ROWS  # rows per prune transaction at most

    def migrate(self) -> None:
        """Create the schema if it is missing; safe to call any number of times."""
        with self._db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(baseline_sql.SQLITE_TABLE)
            conn.execute(baseline_sql.AT_INDEX)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
            if "published_at" not in columns:
                conn.execute(_ADD_PUBLISHED_AT)
                conn.execute(_BACKFILL_PUBLISHED_AT, (time.time_ns() // 1000,))
            conn.execute(_UNPUBLISHED_INDEX)
            for statement in _LATER_INDEXES:
                conn.execute(statement)

    def store_batches(self, batches: Sequence[Batch]) -> StoreOutcome:
        """Store all ``batches`` in one transaction, skipping batches and readings already kept.

        Raises ``BadBatch`` (nothing stored) when SQLite cannot take a value of one of them.
        """
        ordered = claim_order(batches)
        try:
            # The IMMEDIATE transaction takes the write lock up front, so a concurrent writer
            # waits for our commit and then sees our batches as already claimed.
            with self._db.transaction() as conn:
                claimed = _claim(conn, ordered)
                cursor = conn.executemany(_INSERT_READING, _reading_rows(claimed))
                inserted = max(cursor.rowcount, 0)
        except _BAD_DATA as exc:
            # An integer beyond 64 bits, a lone surrogate, a NaN value (NULL to SQLite): the
            # transaction is rolled back, and the same batches would fail the same way again.
            raise BadBatch.of(ordered, exc) from exc
        return StoreOutcome(
            readings_inserted=inserted,
            batches_new=len(claimed),
            batches_duplicate=len(batches) - len(claimed),
            readings_duplicate=reading_total(claimed) - inserted,
        )

    def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Append dead letters."""
        params = [
            (d.received_at_us, d.source, d.reason, d.payload, d.gateway_id, d.batch_seq)
            for d in map(storable_letter, letters)
        ]
        with self._db.transaction() as conn:
            conn.executemany(_INSERT_DEAD_LETTER, params)

    def store_alert_events(self, events: Sequence[AlertEvent]) -> int:
        """Store alert events, ignoring ones already stored; return how many were new."""
        params = [
            (
                e.device_id,
                e.rule_id,
                int(e.severity),
                e.transition.value,
                e.at_us,
                e.message,
                json.dumps(e.evidence),
            )
            for e in events
        ]
        with self._db.transaction() as conn:
            return max(conn.executemany(_INSERT_ALERT, params).rowcount, 0)

    def unpublished_alert_events(self, limit: int = 1000) -> list[AlertEvent]:
        """Up to ``limit`` stored alert events not yet marked published, oldest first."""
        with self._db.reading() as conn:
            rows = conn.execute(_SELECT_UNPUBLISHED, (limit,)).fetchall()
        return _alert_events(rows)

    def mark_alerts_published(self, events: Sequence[AlertEvent]) -> None:
        """Mark stored alert events published (by key); repeats and unknown events are no-ops."""
        if not events:
            return
        now_us = time.time_ns() // 1000
        params = [(now_us, e.device_id, e.rule_id, e.transition.value, e.at_us) for e in events]
        with self._db.transaction() as conn:
            conn.executemany(_MARK_PUBLISHED, params)

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
            "since_us": since_us,
            "until_us": until_us,
        }
        where = [_FILTERS[name] for name, value in params.items() if value is not None]
        query = "SELECT device_id, metric, value, unit, ts_us, seq FROM readings"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY ts_us, seq, device_id, metric"
        if limit is not None:
            query += " LIMIT :limit"
            params["limit"] = limit
        with self._db.reading() as conn:
            return [Reading(*row) for row in conn.execute(query, params)]

    def bucketed(
        self, device_id: str, metric: str, bucket_seconds: int, since_us: int, until_us: int
    ) -> list[Bucket]:
        """Min, avg, max and count of one device's metric per epoch-aligned bucket, in order."""
        check_bucket_seconds(bucket_seconds)
        params = {
            "width": bucket_seconds * 1_000_000,
            "device_id": device_id,
            "metric": metric,
            "since": since_us,
            "until": until_us,
        }
        with self._db.reading() as conn:
            return [Bucket(*row) for row in conn.execute(_BUCKETED, params)]

    def fetch_alert_events(self, device_id: str | None = None) -> list[AlertEvent]:
        """Stored alert events, optionally for one device, ordered by time."""
        query = (
            "SELECT device_id, rule_id, severity, transition, at_us, message, evidence FROM alerts"
            " WHERE (:device_id IS NULL OR device_id = :device_id)"
            " ORDER BY at_us, device_id, rule_id, transition"
        )
        with self._db.reading() as conn:
            rows = conn.execute(query, {"device_id": device_id}).fetchall()
        return _alert_events(rows)

    def latest_by_device(
        self, device_ids: Sequence[str], since_us: int | None = None
    ) -> list[Reading]:
        """The latest reading of each metric of each device (at or after ``since_us``)."""
        found: list[Reading] = []
        for first in range(0, len(device_ids), _CHUNK):
            chunk = list(device_ids[first : first + _CHUNK])
            values = ", ".join(["(?)"] * len(chunk))
            with self._db.reading() as conn:
                rows = conn.execute(_LATEST.format(values=values), [*chunk, since_us, since_us])
                found += [Reading(*row) for row in rows]
        return sorted(found, key=lambda r: (r.device_id, r.metric))

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
        where, params = ["1 = 1"], list[object]()
        if device_ids is not None:
            if not device_ids:
                return []
            where.append(f"device_id IN ({', '.join('?' * len(device_ids))})")
            params += device_ids
        if after is not None:
            where.append("(at_us, device_id, rule_id, transition) > (?, ?, ?, ?)")
            params += after
        for clause, bound in (("at_us >= ?", since_us), ("at_us < ?", until_us)):
            if bound is not None:
                where.append(clause)
                params.append(bound)
        query = (
            f"{_SELECT_EVENTS} WHERE {' AND '.join(where)}"
            " ORDER BY at_us, device_id, rule_id, transition LIMIT ?"
        )
        with self._db.reading() as conn:
            rows = conn.execute(query, [*params, limit]).fetchall()
        return _alert_events(rows)

    def active_alerts(self, device_ids: Sequence[str]) -> list[AlertEvent]:
        """The last event of each (device, rule) of ``device_ids`` whose alert is not cleared."""
        found: list[AlertEvent] = []
        for first in range(0, len(device_ids), _CHUNK):
            chunk = list(device_ids[first : first + _CHUNK])
            with self._db.reading() as conn:
                rows = conn.execute(
                    _ACTIVE.format(ids=", ".join("?" * len(chunk))), chunk
                ).fetchall()
            found += _alert_events(rows)
        return [e for e in found if e.transition is not AlertTransition.CLEARED]

    def store_baselines(self, baselines: Sequence[WoundBaseline]) -> None:
        """Keep the latest of each (device, rule): newer rows replace older ones."""
        with self._db.transaction() as conn:
            conn.executemany(baseline_sql.SQLITE_UPSERT, baseline_sql.rows(baselines))

    def baselines(self, device_ids: Sequence[str]) -> list[WoundBaseline]:
        """The stored baselines of ``device_ids``, ordered by device and rule."""
        found: list[WoundBaseline] = []
        for first in range(0, len(device_ids), _CHUNK):
            chunk = list(device_ids[first : first + _CHUNK])
            query = baseline_sql.SQLITE_SELECT.format(ids=", ".join("?" * len(chunk)))
            with self._db.reading() as conn:
                found += baseline_sql.baselines_of(conn.execute(query, chunk).fetchall())
        return sorted(found, key=lambda b: (b.device_id, b.rule_id))

    def reading_count(self) -> int:
        """How many readings are stored."""
        with self._db.reading() as conn:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def reading_checksum(self) -> tuple[int, float]:
        """Count and sum of values of all stored readings, for reconciliation."""
        with self._db.reading() as conn:
            count, total = conn.execute(
                "SELECT count(*), coalesce(sum(value), 0.0) FROM readings"
            ).fetchone()
        return int(count), float(total)

    def dead_letter_count(self) -> int:
        """How many dead letters are stored."""
        with self._db.reading() as conn:
            return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters after skipping ``offset``, newest first."""
        query = f"{_SELECT_DEAD_LETTERS} ORDER BY received_at_us DESC, id DESC LIMIT ? OFFSET ?"
        with self._db.reading() as conn:
            rows = conn.execute(query, (limit, offset)).fetchall()
        return [_dead_letter(row) for row in rows]

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        """One stored dead letter by id, or None."""
        with self._db.reading() as conn:
            row = conn.execute(f"{_SELECT_DEAD_LETTERS} WHERE id = ?", (letter_id,)).fetchone()
        return None if row is None else _dead_letter(row)

    def prune_readings(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove readings older than ``older_than_us``, in bounded transactions."""
        return self._prune("readings", older_than_us, dry_run)

    def prune_dead_letters(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than_us``, in bounded transactions."""
        return self._prune("dead_letters", older_than_us, dry_run)

    def prune_batch_claims(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Forget batches ingested before ``older_than_us``, in bounded transactions."""
        return self._prune("batch_claims", older_than_us, dry_run)

    def prune_baselines(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove wound baselines whose newest reading is older than ``older_than_us``."""
        return self._prune("baselines", older_than_us, dry_run)

    def _prune(self, kind: str, older_than_us: int, dry_run: bool) -> Pruned:
        """Count, or delete chunk by chunk, the rows of ``kind`` older than the cutoff."""
        count, delete = PRUNES[kind]
        if dry_run:
            with self._db.reading() as conn:
                return Pruned(
                    kind, int(conn.execute(count, (older_than_us,)).fetchone()[0]), older_than_us
                )

        def chunk(limit: int) -> int:
            # One short transaction per chunk: ingest's writes get the lock in between.
            with self._db.transaction() as conn:
                return max(conn.execute(delete, (older_than_us, limit)).rowcount, 0)

        return Pruned(kind, delete_in_chunks(chunk, self.prune_chunk_rows), older_than_us)

    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""
        self._db.close()


def _claim(conn: sqlite3.Connection, ordered: list[Batch]) -> list[Batch]:
    """Claim each batch not claimed before; the ones this call claimed, in order."""
    now_us = time.time_ns() // 1000
    return [
        b
        for b in ordered
        if conn.execute(_CLAIM, (b.gateway_id, b.batch_seq, len(b.readings), now_us)).rowcount == 1
    ]


def _reading_rows(claimed: list[Batch]) -> Iterator[tuple[object, ...]]:
    """One readings-table row per reading of the claimed batches, tagged with its batch."""
    for b in claimed:
        for r in b.readings:
            yield (
                r.ts_us,
                r.device_id,
                r.metric,
                r.value,
                r.unit,
                r.seq,
                b.gateway_id,
                b.batch_seq,
            )


_CHUNK = 5_000  # device ids per statement (SQLite binds at most 32,766 parameters)
# For each device, its metrics by a loose index scan (one seek per metric), then each metric's
# latest reading by one more seek on (device_id, metric, ts_us, seq).
_LATEST = """
WITH RECURSIVE ids(device_id) AS (VALUES {values}),
m(device_id, metric) AS (
    SELECT ids.device_id, (SELECT min(metric) FROM readings r WHERE r.device_id = ids.device_id)
    FROM ids
    UNION ALL
    SELECT m.device_id,
        (SELECT min(metric) FROM readings r WHERE r.device_id = m.device_id AND r.metric > m.metric)
    FROM m WHERE m.metric IS NOT NULL
)
SELECT r.device_id, r.metric, r.value, r.unit, r.ts_us, r.seq
FROM m JOIN readings r ON r.rowid = (
    SELECT x.rowid FROM readings x
    WHERE x.device_id = m.device_id AND x.metric = m.metric AND (? IS NULL OR x.ts_us >= ?)
    ORDER BY x.ts_us DESC, x.seq DESC LIMIT 1
)
WHERE m.metric IS NOT NULL
"""
_SELECT_EVENTS = (
    "SELECT device_id, rule_id, severity, transition, at_us, message, evidence FROM alerts"
)
_ACTIVE = f"""
{_SELECT_EVENTS} AS a WHERE a.device_id IN ({{ids}}) AND a.at_us = (
    SELECT max(b.at_us) FROM alerts b WHERE b.device_id = a.device_id AND b.rule_id = a.rule_id
) ORDER BY a.device_id, a.rule_id, a.transition
"""

_SELECT_DEAD_LETTERS = (
    "SELECT received_at_us, source, reason, payload, gateway_id, batch_seq, id FROM dead_letters"
)


def _dead_letter(row: tuple[int, str, str, bytes, str | None, int | None, int]) -> DeadLetter:
    """A DeadLetter from a row of ``_SELECT_DEAD_LETTERS``."""
    at, source, reason, payload, gateway_id, batch_seq, letter_id = row
    return DeadLetter(at, source, reason, bytes(payload), gateway_id, batch_seq, letter_id)


def _alert_events(rows: Sequence[tuple[str, str, int, str, int, str, str]]) -> list[AlertEvent]:
    """Alert events from rows of the alerts table's event columns, in table order."""
    return [
        AlertEvent(
            device_id=d,
            rule_id=r,
            severity=Severity(s),
            transition=AlertTransition(t),
            at_us=at,
            message=m,
            evidence=json.loads(ev),
        )
        for d, r, s, t, at, m, ev in rows
    ]
