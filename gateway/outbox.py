"""A crash-safe store-and-forward outbox (SQLite in WAL mode).

Readings are appended before anything is sent. A batch is cut from the oldest unbatched
readings and its identity (batch_seq and the reading-id range) is committed before it is
published, so a resend after a crash or outage carries the same batch_seq and the same
readings, which is what lets ingest deduplicate. A batch leaves the outbox only when the broker
acknowledged it (PUBACK).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contract import Batch, Reading

_SCHEMA = """
-- AUTOINCREMENT: ids must never be reused once the table empties, or new readings would
-- fall below the acknowledged watermark.
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    unit TEXT NOT NULL, ts_us INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL, last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, received_at_us INTEGER NOT NULL,
    source TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How much is waiting, and how much the disk bound forced us to drop."""

    pending_readings: int
    open_batches: int
    dropped_readings: int


class OutboxFull(Exception):
    """Raised to callers that asked not to drop data when the bound is reached."""


class Outbox:
    """Durable FIFO of readings grouped into stable batches; thread-safe."""

    def __init__(self, path: Path | str, gateway_id: str, max_readings: int = 10_000_000) -> None:
        self.gateway_id = gateway_id
        self.max_readings = max_readings
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL + synchronous=NORMAL survives a process crash (SIGKILL) without fsync per write;
        # FULL would also survive power loss at a large write cost.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database; everything committed stays on disk."""
        with self._lock:
            self._db.close()

    def append(self, readings: Sequence[Reading]) -> int:
        """Durably add readings; returns how many old readings the bound forced out."""
        if not readings:
            return 0
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO pending (device_id, metric, value, unit, ts_us, seq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(r.device_id, r.metric, r.value, r.unit, r.ts_us, r.seq) for r in readings],
            )
            return self._enforce_bound()

    def _enforce_bound(self) -> int:
        count = self._count()
        excess = count - self.max_readings
        if excess <= 0:
            return 0
        # Drop the oldest readings and any batch they belonged to; counted, never silent.
        cutoff = self._db.execute(
            "SELECT id FROM pending ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)
        ).fetchone()[0]
        self._db.execute("DELETE FROM pending WHERE id <= ?", (cutoff,))
        self._db.execute("DELETE FROM batches WHERE first_id <= ?", (cutoff,))
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (excess,),
        )
        return excess

    def _count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM pending").fetchone()
        return int(row[0])

    def open_batches(self) -> list[Batch]:
        """Batches cut but not yet acknowledged, oldest first: what to resend after a restart."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_seq, first_id, last_id FROM batches ORDER BY batch_seq"
            ).fetchall()
            return [self._load(seq, first, last) for seq, first, last in rows]

    def next_batch(self, max_readings: int) -> Batch | None:
        """Cut a new batch from the oldest unbatched readings, or None if there are none."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            # Watermarks, not max() over open batches: acks arrive out of order, and an acked
            # batch's seq or ids must never be handed out again.
            after = self._meta("batched_through")
            last_seq = self._meta("last_batch_seq")
            ids = self._db.execute(
                "SELECT id FROM pending WHERE id > ? ORDER BY id LIMIT ?", (after, max_readings)
            ).fetchall()
            if not ids:
                return None
            seq = last_seq + 1
            first, last = ids[0][0], ids[-1][0]
            self._db.execute(
                "INSERT INTO batches (batch_seq, first_id, last_id) VALUES (?, ?, ?)",
                (seq, first, last),
            )
            self._set_meta("last_batch_seq", seq)
            self._set_meta("batched_through", last)
            return self._load(seq, first, last)

    def acknowledge(self, batch_seq: int) -> None:
        """The broker has the batch: forget it and its readings."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT first_id, last_id FROM batches WHERE batch_seq = ?", (batch_seq,)
            ).fetchone()
            if row is None:
                return  # already acknowledged, or dropped by the bound
            self._db.execute("DELETE FROM pending WHERE id BETWEEN ? AND ?", row)
            self._db.execute("DELETE FROM batches WHERE batch_seq = ?", (batch_seq,))

    def dead_letter(self, received_at_us: int, source: str, reason: str, payload: bytes) -> None:
        """Keep an input the gateway could not use, with the reason, for later inspection."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO dead_letters (received_at_us, source, reason, payload)"
                " VALUES (?, ?, ?, ?)",
                (received_at_us, source, reason, payload),
            )

    def dead_letters(self) -> list[tuple[str, str, bytes]]:
        """(source, reason, payload) of every dead letter, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT source, reason, payload FROM dead_letters ORDER BY id"
            ).fetchall()
            return [(str(a), str(b), bytes(c)) for a, b, c in rows]

    def stats(self) -> OutboxStats:
        """Current backlog and drop count."""
        with self._lock:
            batches = self._db.execute("SELECT count(*) FROM batches").fetchone()[0]
            return OutboxStats(self._count(), int(batches), self._meta("dropped"))

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _load(self, batch_seq: int, first_id: int, last_id: int) -> Batch:
        rows = self._db.execute(
            "SELECT device_id, metric, value, unit, ts_us, seq FROM pending"
            " WHERE id BETWEEN ? AND ? ORDER BY id",
            (first_id, last_id),
        ).fetchall()
        return Batch(self.gateway_id, batch_seq, tuple(Reading(*row) for row in rows))
