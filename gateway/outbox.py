"""A crash-safe store-and-forward outbox (SQLite in WAL mode).

Readings are appended before anything is sent. A batch is cut from the oldest unbatched
readings and its identity (batch_seq and the reading-id range) is committed before it is
published, so a resend after a crash or outage carries the same batch_seq and the same
readings, which is what lets ingest deduplicate.

Storage costs no SQLite row per reading: each append is one row of ``chunks`` (split at
``CHUNK_MAX``; a small one joins the newest chunk, up to ``GROW_MAX``) holding the readings
packed as the wire-v2 columns (``contract.batch_binary``); a reading's id is implied by its
place (the chunk's ``first_id`` + its row). Which readings are still here follows from the
batches table and two watermarks: ids up to ``batched_through`` are in an open batch or gone
(confirmed, or dropped by the bound), the ids after it up to ``appended_through`` wait to be
cut. A batch is cut and sent straight from the chunks' columns (``PackedBatch``); a chunk is
deleted once no reading in it is still here.

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract import Batch, Reading
from contract.batch_binary import PackedBatch, PackedColumns
from gateway import dead_letters
from gateway.dead_letters import DeadLetterStats, Letter, StoredLetter

_SCHEMA = """
-- Readings waiting, one row per append (split at CHUNK_MAX): the readings packed as wire-v2
-- columns (contract.batch_binary), their ids first_id..last_id implied by their order. Ids are
-- never reused (meta appended_through), or new readings would fall below the batched watermark.
CREATE TABLE IF NOT EXISTS chunks (
    first_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL, body BLOB NOT NULL
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
# Readings per stored chunk, at most: a batch cut from a huge append reads a few chunks of
# this size, not the whole append (~256 KB each).
CHUNK_MAX = 8_192
# An append smaller than this joins the newest chunk while that is not yet cut and stays
# within it: each chunk's header (device and series tables) costs once per chunk.
GROW_MAX = 1_024


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
        _migrate(self._db, gateway_id)
        # The counts are derived once here, then kept in step with every committed write.
        open_count, in_open = self._db.execute(
            "SELECT count(*), coalesce(sum(last_id - first_id + 1), 0) FROM batches"
        ).fetchone()
        self._open = int(open_count)
        unbatched = self._meta("appended_through") - self._meta("batched_through")
        self._pending = int(in_open) + unbatched
        self._letter_bytes = dead_letters.stored_bytes(self._db)
        self._bound = max_readings

    def close(self) -> None:
        """Close the database; everything committed stays on disk."""
        with self._lock:
            self._db.close()

    def append(self, readings: Sequence[Reading]) -> int:
        """Durably add readings; returns how many old readings the bound forced out."""
        if not readings:
            return 0
        # Packed before the transaction: a reading no column can hold (a seq beyond 64 bits, a
        # value that is no number) raises here, and nothing is written.
        parts = list(_packed(readings, CHUNK_MAX))
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                last_id = self._meta("appended_through")
                if self._grow_tail(last_id, parts[0]):
                    last_id += len(parts.pop(0))
                for part in parts:
                    self._db.execute(
                        "INSERT INTO chunks (first_id, last_id, body) VALUES (?, ?, ?)",
                        (last_id + 1, last_id + len(part), part.payload(self.gateway_id, 0)),
                    )
                    last_id += len(part)
                self._set_meta("appended_through", last_id)
                pending = self._pending + len(readings)
                dropped, batches_dropped = self._enforce_bound(pending)
            self._pending = pending - dropped
            self._open -= batches_dropped
            return dropped

    def _grow_tail(self, last_id: int, part: PackedColumns) -> bool:
        """Add ``part`` to the newest chunk if it is small and none of it is cut yet.

        A trickle of small appends (a home kit's frames) then shares chunks, and their headers,
        instead of paying one per append. A chunk that a batch already covers is never
        rewritten, so a resend's payload stays byte for byte the first one.
        """
        row = self._db.execute(
            "SELECT first_id, last_id FROM chunks ORDER BY first_id DESC LIMIT 1"
        ).fetchone()
        if row is None or int(row[1]) != last_id or int(row[0]) <= self._meta("batched_through"):
            return False
        first_id = int(row[0])
        if last_id - first_id + 1 + len(part) > min(GROW_MAX, CHUNK_MAX):
            return False
        (body,) = self._db.execute(
            "SELECT body FROM chunks WHERE first_id = ?", (first_id,)
        ).fetchone()
        grown = PackedColumns.concat([PackedColumns.parse(bytes(body)), part])
        self._db.execute(
            "UPDATE chunks SET last_id = ?, body = ? WHERE first_id = ?",
            (last_id + len(part), grown.payload(self.gateway_id, 0), first_id),
        )
        return True

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
        dropped, cutoff = self._drop_through(excess)
        # Published-but-unconfirmed batches go too: unconfirmed, they count as not delivered.
        batches = int(
            self._db.execute("DELETE FROM batches WHERE first_id <= ?", (cutoff,)).rowcount
        )
        if cutoff > self._meta("batched_through"):
            self._set_meta("batched_through", cutoff)  # unbatched readings went: never cut them
        self._collect(trim=True)
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (dropped,),
        )
        return dropped, batches

    def _drop_through(self, excess: int) -> tuple[int, int]:
        """(readings, last id) to drop so that at least ``excess`` of the oldest readings go.

        The oldest readings are those of the open batches (all below the unbatched ones), then
        the unbatched ones. An open batch straddling the cut goes whole (module docstring).
        """
        dropped = cutoff = 0
        for first, last in self._db.execute(
            "SELECT first_id, last_id FROM batches ORDER BY batch_seq"
        ).fetchall():
            if dropped >= excess:
                return dropped, cutoff
            dropped, cutoff = dropped + int(last) - int(first) + 1, int(last)
        if dropped < excess:
            cutoff = self._meta("batched_through") + excess - dropped
            dropped = excess
        return dropped, cutoff

    def _lowest_live(self) -> int:
        """Id of the oldest reading still in the outbox (appended_through + 1 when none is)."""
        (oldest_open,) = self._db.execute("SELECT min(first_id) FROM batches").fetchone()
        unbatched = self._meta("batched_through") + 1
        return unbatched if oldest_open is None else min(int(oldest_open), unbatched)

    def _collect(self, trim: bool) -> None:
        """Delete the chunks below the oldest reading still here; ``trim``: also cut the dead
        head off the chunk it is in, so that the byte bound sees the space freed.

        Chunks above it whose readings all left (batches confirmed out of order) stay until
        the older ones go: at most the uplink's window of unconfirmed batches.
        """
        lowest = self._lowest_live()
        self._db.execute("DELETE FROM chunks WHERE first_id < ? AND last_id < ?", (lowest, lowest))
        if not trim:
            return
        row = self._db.execute(
            "SELECT first_id, body FROM chunks WHERE first_id < ?", (lowest,)
        ).fetchone()
        if row is not None:
            kept = PackedColumns.parse(bytes(row[1]), lowest - int(row[0]))
            self._db.execute(
                "UPDATE chunks SET first_id = ?, body = ? WHERE first_id = ?",
                (lowest, kept.payload(self.gateway_id, 0), row[0]),
            )

    def _columns(self, first_id: int, last_id: int) -> PackedColumns:
        """Readings ``first_id..last_id`` from the chunks that hold them."""
        (start,) = self._db.execute(
            "SELECT coalesce(max(first_id), ?) FROM chunks WHERE first_id <= ?",
            (first_id, first_id),
        ).fetchone()
        rows = self._db.execute(
            "SELECT first_id, body FROM chunks WHERE first_id BETWEEN ? AND ? ORDER BY first_id",
            (start, last_id),
        ).fetchall()
        parts = [
            PackedColumns.parse(bytes(body), first_id - int(at), last_id - int(at) + 1)
            for at, body in rows
        ]
        columns = PackedColumns.concat(parts)
        if len(columns) != last_id - first_id + 1 or not rows or rows[0][0] > first_id:
            raise RuntimeError(f"outbox readings {first_id}..{last_id} are not all stored")
        return columns

    def _load(self, batch_seq: int, first_id: int, last_id: int) -> Batch:
        return PackedBatch(self.gateway_id, batch_seq, self._columns(first_id, last_id))

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
        """Cut a new batch from the oldest unbatched readings, or None if there are none.

        The batch is a ``PackedBatch``: it goes to the wire as the stored columns, and builds
        ``readings`` only for a caller that asks for them.
        """
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            # Watermarks, not max() over open batches: acks arrive out of order, and an acked
            # batch's seq or ids must never be handed out again.
            after = self._meta("batched_through")
            last = min(self._meta("appended_through"), after + max_readings)
            if last <= after:
                return None
            seq = self._meta("last_batch_seq") + 1
            batch = self._load(seq, after + 1, last)
            self._db.execute(
                "INSERT INTO batches (batch_seq, first_id, last_id) VALUES (?, ?, ?)",
                (seq, after + 1, last),
            )
            self._set_meta("last_batch_seq", seq)
            self._set_meta("batched_through", last)
            self._open += 1
            return batch

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
                    self._db.execute("DELETE FROM batches WHERE batch_seq = ?", (batch_seq,))
                    removed += int(row[1]) - int(row[0]) + 1
                    batches += 1
                if batches:
                    self._collect(trim=False)
            self._pending -= removed
            self._open -= batches
            return removed

    def acknowledge(self, batch_seq: int) -> int:
        """Forget a batch on the broker's PUBACK (no confirming ingest); readings removed."""
        return self.confirm((batch_seq,))

    def pending(self) -> list[Reading]:
        """Every reading still in the outbox, oldest first: the open batches', then the
        unbatched ones (builds a Reading per reading: for tests and tools, not the data path)."""
        with self._lock:
            ranges = self._db.execute(
                "SELECT first_id, last_id FROM batches ORDER BY batch_seq"
            ).fetchall()
            after, through = self._meta("batched_through"), self._meta("appended_through")
            if through > after:
                ranges.append((after + 1, through))
            return [r for first, last in ranges for r in self._columns(first, last).readings()]

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
            lowest = self._lowest_live()
            if lowest > self._meta("appended_through"):
                return None
            row = self._db.execute(
                "SELECT first_id, body FROM chunks WHERE first_id <= ?"
                " ORDER BY first_id DESC LIMIT 1",
                (lowest,),
            ).fetchone()
        if row is None:
            return None
        row_at = lowest - int(row[0])
        return PackedColumns.parse(bytes(row[1]), row_at, row_at + 1).ts_at(0)

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
        return _get_meta(self._db, key)

    def _set_meta(self, key: str, value: int) -> None:
        _put_meta(self._db, key, value)


def _packed(readings: Sequence[Reading], size: int) -> Iterator[PackedColumns]:
    """``readings`` packed ``size`` at a time."""
    if len(readings) <= size:
        yield PackedColumns.of(readings)
        return
    for start in range(0, len(readings), size):
        yield PackedColumns.of(readings[start : start + size])


def _get_meta(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _put_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _migrate(db: sqlite3.Connection, gateway_id: str) -> None:
    """Bring an outbox file written by an older gateway up to the current schema."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(batches)")}
    if "published_at_us" not in columns:
        # Its open batches were never confirmed by ingest: NULL makes them all resend.
        db.execute("ALTER TABLE batches ADD COLUMN published_at_us INTEGER")
    dead_letters.migrate(db)
    _migrate_pending(db, gateway_id)


def _migrate_pending(db: sqlite3.Connection, gateway_id: str) -> None:
    """Move the readings of an outbox that kept a row per reading (table ``pending``) into
    chunks, keeping every reading's id: open batches resend with the same content.

    One transaction: a crash half way leaves the old table as it was, and the next start
    migrates again. A reading no column can hold (only a caller that skipped validation could
    have stored one) fails the migration, and the gateway, rather than lose readings.
    """
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pending'"
    ).fetchone()
    if exists is None:
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        after = _get_meta(db, "batched_through")
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()
        appended = max(after, int(row[0]) if row else 0)
        # The old bound dropped unbatched rows without moving the watermark; here ids at or
        # below batched_through are in an open batch or gone, so the watermark moves past them.
        (oldest_unbatched,) = db.execute(
            "SELECT min(id) FROM pending WHERE id > ?", (after,)
        ).fetchone()
        _put_meta(db, "appended_through", appended)
        _put_meta(
            db, "batched_through", appended if oldest_unbatched is None else oldest_unbatched - 1
        )
        _copy_runs(db, gateway_id)
        db.execute("DROP TABLE pending")


def _copy_runs(db: sqlite3.Connection, gateway_id: str) -> None:
    """Pack each run of consecutive ids of ``pending`` into chunks of at most CHUNK_MAX."""
    rows = db.execute(
        "SELECT id, device_id, metric, value, unit, ts_us, seq FROM pending ORDER BY id"
    )
    run: list[Reading] = []
    first = 0
    while block := rows.fetchmany(CHUNK_MAX):
        for reading_id, *fields in block:
            if run and (reading_id != first + len(run) or len(run) == CHUNK_MAX):
                _insert_chunk(db, gateway_id, first, run)
                run = []
            if not run:
                first = int(reading_id)
            run.append(Reading(*fields))
    if run:
        _insert_chunk(db, gateway_id, first, run)


def _insert_chunk(
    db: sqlite3.Connection, gateway_id: str, first_id: int, readings: Sequence[Reading]
) -> None:
    body = PackedColumns.of(readings).payload(gateway_id, 0)
    db.execute(
        "INSERT INTO chunks (first_id, last_id, body) VALUES (?, ?, ?)",
        (first_id, first_id + len(readings) - 1, body),
    )
