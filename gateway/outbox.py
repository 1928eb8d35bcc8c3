"""A crash-safe store-and-forward outbox (SQLite in WAL mode).

Readings are appended before anything is sent. A batch is cut from the oldest unbatched
readings and its identity (batch_seq and the reading-id range) is committed before it is
published, so a resend after a crash or outage carries the same batch_seq and the same
readings, which is what lets ingest deduplicate.

A batch leaves the outbox only when ingest confirms it stored it (``confirm``). The broker's
PUBACK only marks it published (``published_at_us``): Mosquitto acknowledges before it persists,
so a broker crash can lose what it acknowledged, and the batch must still be here to resend.
(``acknowledge`` removes a batch on PUBACK, for deployments whose ingest does not confirm.)

The outbox is bounded (``max_readings`` and, optionally, ``max_bytes`` of live database pages).
When a write would exceed the bound, the OLDEST readings go, and they are counted durably. An
open batch that would lose some of its readings is dropped whole: shrinking it would give an
already-published batch_seq different content, and ingest, which keeps the first copy of a
batch_seq, could then never receive the rest. The outbox also queues alert events so that
they reach the broker through the same outage-proof path as readings, and keeps the dead letters
(``max_dead_letter_bytes``, oldest dropped first, and ``max_dead_letter_age_s``; see
gateway/dead_letters.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract import Batch, Reading
from gateway import dead_letters
from gateway.dead_letters import DeadLetterStats, Letter, StoredLetter

_SCHEMA = """
-- AUTOINCREMENT: ids must never be reused once the table empties, or new readings would
-- fall below the acknowledged watermark.
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    unit TEXT NOT NULL, ts_us INTEGER NOT NULL, seq INTEGER NOT NULL
);
-- published_at_us: NULL until the broker first acknowledged the batch; the batch stays until
-- ingest confirms it stored it.
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL, last_id INTEGER NOT NULL,
    published_at_us INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- size: bytes of payload, source and reason, for the byte bound (gateway/dead_letters.py).
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, received_at_us INTEGER NOT NULL,
    source TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
-- The age bound (retention) finds old letters by this index.
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at_us);
CREATE TABLE IF NOT EXISTS alarms (
    rule_id TEXT PRIMARY KEY, active INTEGER NOT NULL, mark INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts_out (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL
);
"""
_COLUMNS = "device_id, metric, value, unit, ts_us, seq"
_TAIL_CACHE_MAX = 200_000  # readings held in memory for next_batch, at most (~25 MB)
# Readings are inserted as the tuples they are, so their field order must be the column order.
if Reading._fields != tuple(_COLUMNS.split(", ")):
    raise ImportError(f"Reading fields {Reading._fields} no longer match the outbox columns")


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How much is waiting, and how much the disk bound forced us to drop."""

    pending_readings: int  # includes readings of batches published but not yet confirmed
    open_batches: int  # cut and not yet confirmed
    dropped_readings: int
    bound_readings: int = 0  # the reading bound currently in force (max_bytes may lower it)
    published_batches: int = 0  # of the open batches, those the broker has acknowledged


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A batch cut and not yet confirmed, and when the broker acknowledged it (None: never)."""

    batch_seq: int
    published_at_us: int | None


@dataclass(frozen=True, slots=True)
class AlarmState:
    """A gateway-level alarm: whether it is raised, and the drop count it last saw."""

    active: bool
    mark: int


class Outbox:
    """Durable FIFO of readings grouped into stable batches; thread-safe."""

    def __init__(
        self,
        path: Path | str,
        gateway_id: str,
        max_readings: int = 10_000_000,
        max_bytes: int | None = None,
        max_dead_letter_bytes: int = dead_letters.DEFAULT_MAX_BYTES,
        max_dead_letter_age_s: float | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.max_dead_letter_age_s = max_dead_letter_age_s  # None: kept until the byte bound
        # A letter keeps at most this much payload, so one letter never exceeds the bound.
        self._letter_cap = max(0, min(dead_letters.MAX_PAYLOAD_BYTES, max_dead_letter_bytes // 4))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL + synchronous=NORMAL survives a process crash (SIGKILL) without fsync per write;
        # FULL would also survive power loss at a large write cost.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        # count(*) scans the table; one scan here, then the count is kept in step with every
        # committed write, so a multi-million backlog does not cost a scan per append.
        self._pending = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])
        self._open = int(self._db.execute("SELECT count(*) FROM batches").fetchone()[0])
        self._letter_bytes = dead_letters.stored_bytes(self._db)
        self._bound = max_readings
        # Readings appended but not yet batched, in id order from _tail_first_id: cutting a
        # batch from here skips reading back what was just written. Only a cache: it starts
        # empty, and whenever it cannot be trusted it is emptied and SQLite answers instead.
        self._tail: deque[Reading] = deque()
        self._tail_first_id = 0

    def close(self) -> None:
        """Close the database; everything committed stays on disk."""
        with self._lock:
            self._db.close()

    def append(self, readings: Sequence[Reading]) -> int:
        """Durably add readings; returns how many old readings the bound forced out."""
        if not readings:
            return 0
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    f"INSERT INTO pending ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    readings,  # a Reading is a tuple in exactly the column order
                )
                last_id = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
                pending = self._pending + len(readings)
                dropped, batches_dropped = self._enforce_bound(pending)
            self._pending = pending - dropped
            self._open -= batches_dropped
            self._cache(readings, last_id, dropped)
            return dropped

    def _cache(self, readings: Sequence[Reading], last_id: int, dropped: int) -> None:
        """Remember a committed append for next_batch, if it extends the cached tail."""
        first_id = last_id - len(readings) + 1  # one INSERT under BEGIN IMMEDIATE: contiguous
        if dropped or len(self._tail) + len(readings) > _TAIL_CACHE_MAX:
            self._tail.clear()  # the bound cut rows, or too much to hold: SQLite answers
            return
        if self._tail and self._tail_first_id + len(self._tail) != first_id:
            self._tail.clear()
        if not self._tail:
            self._tail_first_id = first_id
        self._tail.extend(readings)

    def _take_cached(self, after: int, max_readings: int) -> list[Reading] | None:
        """The next readings after id ``after`` from the cache, or None if it does not hold them."""
        if not self._tail or self._tail_first_id != after + 1:
            return None
        count = min(max_readings, len(self._tail))
        taken = [self._tail.popleft() for _ in range(count)]
        self._tail_first_id += count
        return taken

    def _forget_cached_through(self, last_id: int) -> None:
        """Drop cached readings that SQLite has just put into a batch."""
        overlap = last_id - self._tail_first_id + 1
        if overlap >= len(self._tail):
            self._tail.clear()
        elif overlap > 0:
            for _ in range(overlap):
                self._tail.popleft()
            self._tail_first_id += overlap

    def _bound_now(self, pending: int) -> int:
        """max_readings, lowered to what max_bytes holds at the current bytes per reading."""
        if self.max_bytes is None or pending == 0:
            return self.max_readings
        # Live pages only: freed pages are reused before the file grows, so they cost no disk.
        pages, free, size = (
            int(self._db.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count", "page_size")
        )
        used = (pages - free) * size
        if used <= self.max_bytes:
            return self.max_readings
        return min(self.max_readings, max(1, self.max_bytes * pending // used))

    def _enforce_bound(self, pending: int) -> tuple[int, int]:
        """Drop the oldest readings (and any batch they belonged to) to fit the bound.

        Returns (readings dropped, batches dropped).
        """
        self._bound = self._bound_now(pending)
        excess = pending - self._bound
        if excess <= 0:
            return 0, 0
        cutoff = int(
            self._db.execute(
                "SELECT id FROM pending ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()[0]
        )
        # An open batch straddling the cutoff goes whole (see the module docstring).
        straddling = self._db.execute(
            "SELECT max(last_id) FROM batches WHERE first_id <= ?", (cutoff,)
        ).fetchone()[0]
        if straddling is not None:
            cutoff = max(cutoff, int(straddling))
        dropped = int(self._db.execute("DELETE FROM pending WHERE id <= ?", (cutoff,)).rowcount)
        # Published-but-unconfirmed batches go too: unconfirmed, they count as not delivered.
        batches = int(
            self._db.execute("DELETE FROM batches WHERE first_id <= ?", (cutoff,)).rowcount
        )
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (dropped,),
        )
        return dropped, batches

    def open_batches(self) -> list[Batch]:
        """Batches cut but not yet confirmed, oldest first, with their readings."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_seq, first_id, last_id FROM batches ORDER BY batch_seq"
            ).fetchall()
            return [self._load(seq, first, last) for seq, first, last in rows]

    def open_batch_states(self) -> list[OpenBatch]:
        """Batches cut but not yet confirmed, oldest first: what to resend after a reconnect."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_seq, published_at_us FROM batches ORDER BY batch_seq"
            ).fetchall()
            return [OpenBatch(int(seq), None if at is None else int(at)) for seq, at in rows]

    def open_batch_count(self) -> int:
        """How many batches are cut and not yet confirmed (no query: kept in step)."""
        return self._open

    def batch(self, batch_seq: int) -> Batch | None:
        """One open batch with its readings, exactly as cut; None once confirmed or dropped."""
        with self._lock:
            row = self._db.execute(
                "SELECT first_id, last_id FROM batches WHERE batch_seq = ?", (batch_seq,)
            ).fetchone()
            return None if row is None else self._load(batch_seq, int(row[0]), int(row[1]))

    def next_batch(self, max_readings: int) -> Batch | None:
        """Cut a new batch from the oldest unbatched readings, or None if there are none."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            # Watermarks, not max() over open batches: acks arrive out of order, and an acked
            # batch's seq or ids must never be handed out again.
            after = self._meta("batched_through")
            cached = self._take_cached(after, max_readings)
            if cached is not None:
                readings = tuple(cached)
                first, last = after + 1, after + len(cached)
            else:
                # One query for identity and content: a big backlog's drain is bound by it.
                rows = self._db.execute(
                    f"SELECT id, {_COLUMNS} FROM pending WHERE id > ? ORDER BY id LIMIT ?",
                    (after, max_readings),
                ).fetchall()
                if not rows:
                    return None
                readings = tuple(Reading._make(row[1:]) for row in rows)
                first, last = rows[0][0], rows[-1][0]
                self._forget_cached_through(last)
            seq = self._meta("last_batch_seq") + 1
            self._db.execute(
                "INSERT INTO batches (batch_seq, first_id, last_id) VALUES (?, ?, ?)",
                (seq, first, last),
            )
            self._set_meta("last_batch_seq", seq)
            self._set_meta("batched_through", last)
            self._open += 1
            return Batch(self.gateway_id, seq, readings)

    def mark_published(self, batch_seq: int, at_us: int) -> bool:
        """The broker acknowledged the batch; False if it is no longer open (already confirmed).

        The first acknowledgement's time is kept: a resend does not make a batch younger.
        """
        with self._lock, self._db:
            return (
                self._db.execute(
                    "UPDATE batches SET published_at_us = coalesce(published_at_us, ?)"
                    " WHERE batch_seq = ?",
                    (at_us, batch_seq),
                ).rowcount
                == 1
            )

    def confirm(self, batch_seqs: Iterable[int]) -> int:
        """Ingest stored these batches: forget them; returns how many readings left the outbox.

        Unknown seqs (confirmed before, dropped by the bound, never cut) are ignored: ingest
        confirms every copy it receives, and copies can outlive their batch.
        """
        removed = batches = 0
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for batch_seq in batch_seqs:
                    row = self._db.execute(
                        "SELECT first_id, last_id FROM batches WHERE batch_seq = ?", (batch_seq,)
                    ).fetchone()
                    if row is None:
                        continue
                    removed += int(
                        self._db.execute(
                            "DELETE FROM pending WHERE id BETWEEN ? AND ?", row
                        ).rowcount
                    )
                    self._db.execute("DELETE FROM batches WHERE batch_seq = ?", (batch_seq,))
                    batches += 1
            self._pending -= removed
            self._open -= batches
            return removed

    def acknowledge(self, batch_seq: int) -> int:
        """Forget a batch on the broker's PUBACK (no confirming ingest); readings removed."""
        return self.confirm((batch_seq,))

    def dead_letter(self, received_at_us: int, source: str, reason: str, payload: bytes) -> int:
        """Keep an input the gateway could not use, with the reason; returns letters dropped."""
        return self.dead_letter_many([Letter(received_at_us, source, reason, payload)])

    def dead_letter_many(self, letters: Sequence[Letter]) -> int:
        """Keep several dead letters in one commit; returns how many old ones the bound dropped."""
        if not letters:
            return 0
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            held = self._letter_bytes + dead_letters.insert(self._db, letters, self._letter_cap)
            dropped, freed = dead_letters.enforce_bound(self._db, held, self.max_dead_letter_bytes)
        self._letter_bytes = held - freed
        return dropped

    def expire_dead_letters(self, now_us: int) -> int:
        """Delete dead letters older than the age bound at ``now_us``; returns how many went."""
        if self.max_dead_letter_age_s is None:
            return 0
        older_than_us = now_us - round(self.max_dead_letter_age_s * 1_000_000)
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                expired, freed = dead_letters.expire(self._db, older_than_us)
            self._letter_bytes -= freed  # committed: the byte count follows
        return expired

    def dead_letters(self) -> list[tuple[str, str, bytes]]:
        """(source, reason, payload) of every dead letter, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT source, reason, payload FROM dead_letters ORDER BY id"
            ).fetchall()
            return [(str(a), str(b), bytes(c)) for a, b, c in rows]

    def dead_letter_page(self, limit: int, offset: int = 0) -> list[StoredLetter]:
        """Up to ``limit`` dead letters with their ids, newest first."""
        with self._lock:
            return dead_letters.page(self._db, limit, offset)

    def dead_letter_stats(self) -> DeadLetterStats:
        """Dead letters and bytes kept, and how many the byte bound dropped (durable)."""
        with self._lock:
            return dead_letters.stats(self._db)

    def stats(self) -> OutboxStats:
        """Current backlog, drop count and the bound in force."""
        with self._lock:
            batches, published = self._db.execute(
                "SELECT count(*), count(published_at_us) FROM batches"
            ).fetchone()
            return OutboxStats(
                self._pending, int(batches), self._meta("dropped"), self._bound, int(published)
            )

    def oldest_pending_us(self) -> int | None:
        """Timestamp of the oldest reading still waiting (first appended), None if none."""
        with self._lock:
            row = self._db.execute("SELECT ts_us FROM pending ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def alarm(self, rule_id: str) -> AlarmState:
        """The stored state of a gateway-level alarm (inactive, mark 0 if never raised)."""
        with self._lock:
            row = self._db.execute(
                "SELECT active, mark FROM alarms WHERE rule_id = ?", (rule_id,)
            ).fetchone()
            return AlarmState(bool(row[0]), int(row[1])) if row else AlarmState(False, 0)

    def queue_alert(self, rule_id: str, state: AlarmState, payload: bytes) -> None:
        """Record an alarm transition and queue its event for the uplink, in one commit."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO alarms (rule_id, active, mark) VALUES (?, ?, ?)"
                " ON CONFLICT (rule_id) DO UPDATE SET active = excluded.active,"
                " mark = excluded.mark",
                (rule_id, int(state.active), state.mark),
            )
            self._db.execute("INSERT INTO alerts_out (payload) VALUES (?)", (payload,))

    def queued_alerts(self) -> list[tuple[int, bytes]]:
        """(id, payload) of alert events not yet acknowledged by the broker, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, payload FROM alerts_out ORDER BY id").fetchall()
            return [(int(i), bytes(p)) for i, p in rows]

    def alert_sent(self, alert_id: int) -> None:
        """The broker has the alert event: forget it."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM alerts_out WHERE id = ?", (alert_id,))

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
            f"SELECT {_COLUMNS} FROM pending WHERE id BETWEEN ? AND ? ORDER BY id",
            (first_id, last_id),
        ).fetchall()
        return Batch(self.gateway_id, batch_seq, tuple(Reading(*row) for row in rows))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an outbox file written by an older gateway up to the current schema."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(batches)")}
    if "published_at_us" not in columns:
        # Its open batches were never confirmed by ingest: NULL makes them all resend.
        db.execute("ALTER TABLE batches ADD COLUMN published_at_us INTEGER")
    dead_letters.migrate(db)
