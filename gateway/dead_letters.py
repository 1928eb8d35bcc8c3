"""The outbox's dead letters: inputs the gateway could not use, kept with why, bounded in bytes.

A flood of poison must not fill the gateway's disk: when the letters exceed ``max_bytes``, the
oldest go first (down to 90 % of the bound, so one scan makes room for many), and how many went
is counted durably in ``meta``. Letters older than the retention's age bound go too (``expire``,
run periodically by the gateway). Reasons and sources are stored escaped: hostile text can carry
lone surrogates (which UTF-8 cannot store) or terminal control sequences.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.errors import printable

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024  # a letter keeps at most this much of its payload
_DROPPED = "dead_letters_dropped"
_DROPPED_BYTES = "dead_letter_bytes_dropped"
_SIZE = "length(payload) + length(CAST(source AS BLOB)) + length(CAST(reason AS BLOB))"
_SELECT = "SELECT id, received_at_us, source, reason, payload FROM dead_letters"


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as the gateway received it (the payload possibly truncated)."""

    received_at_us: int
    source: str
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as stored, with its id."""

    id: int
    received_at_us: int
    source: str
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetterStats:
    """How many letters and bytes are kept, and how many the byte bound dropped."""

    count: int
    bytes: int
    dropped: int
    dropped_bytes: int


def migrate(db: sqlite3.Connection) -> None:
    """Add the per-letter size column to an outbox written by an older gateway."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(dead_letters)")}
    if "size" not in columns:
        db.execute("ALTER TABLE dead_letters ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
        db.execute(f"UPDATE dead_letters SET size = {_SIZE}")


def stored_bytes(db: sqlite3.Connection) -> int:
    """Bytes the dead letters take now (one scan, at open)."""
    return int(db.execute("SELECT coalesce(sum(size), 0) FROM dead_letters").fetchone()[0])


def insert(db: sqlite3.Connection, letters: Sequence[Letter], cap: int) -> int:
    """Insert letters inside the caller's transaction; returns the bytes they take."""
    total = 0
    for letter in letters:
        source, reason, payload = _safe(letter, cap)
        size = len(payload) + len(source.encode()) + len(reason.encode())
        db.execute(
            "INSERT INTO dead_letters (received_at_us, source, reason, payload, size)"
            " VALUES (?, ?, ?, ?, ?)",
            (letter.received_at_us, source, reason, payload, size),
        )
        total += size
    return total


def enforce_bound(db: sqlite3.Connection, held: int, max_bytes: int) -> tuple[int, int]:
    """Drop the oldest letters until ``held`` bytes fit ``max_bytes``; (letters, bytes) gone."""
    if held <= max_bytes:
        return 0, 0
    excess = held - max_bytes * 9 // 10
    row = db.execute(
        "SELECT id, running FROM (SELECT id, sum(size) OVER (ORDER BY id) AS running"
        " FROM dead_letters) WHERE running >= ? ORDER BY id LIMIT 1",
        (excess,),
    ).fetchone()
    if row is None:  # the count was off: everything goes
        row = db.execute("SELECT max(id), coalesce(sum(size), 0) FROM dead_letters").fetchone()
    cutoff, freed = int(row[0] or 0), int(row[1])
    dropped = int(db.execute("DELETE FROM dead_letters WHERE id <= ?", (cutoff,)).rowcount)
    for key, value in ((_DROPPED, dropped), (_DROPPED_BYTES, freed)):
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (key, value),
        )
    return dropped, freed


def expire(db: sqlite3.Connection, older_than_us: int) -> tuple[int, int]:
    """Delete letters received before ``older_than_us`` (the age bound); (letters, bytes) gone.

    Not counted as dropped: that count says the byte bound lost letters nobody had looked at,
    whereas these have been kept as long as the retention asks.
    """
    count, size = db.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM dead_letters WHERE received_at_us < ?",
        (older_than_us,),
    ).fetchone()
    if count:
        db.execute("DELETE FROM dead_letters WHERE received_at_us < ?", (older_than_us,))
    return int(count), int(size)


def page(db: sqlite3.Connection, limit: int, offset: int = 0) -> list[StoredLetter]:
    """Up to ``limit`` letters, newest first, skipping the ``offset`` newest."""
    rows = db.execute(f"{_SELECT} ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
    return [_letter(row) for row in rows.fetchall()]


def by_id(db: sqlite3.Connection, letter_id: int) -> StoredLetter | None:
    """One letter by id, or None."""
    row = db.execute(f"{_SELECT} WHERE id = ?", (letter_id,)).fetchone()
    return None if row is None else _letter(row)


def stats(db: sqlite3.Connection) -> DeadLetterStats:
    """Letters and bytes kept, and the durable drop counts."""
    count, held = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM dead_letters").fetchone()
    meta = dict(
        db.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (_DROPPED, _DROPPED_BYTES)
        ).fetchall()
    )
    return DeadLetterStats(
        int(count), int(held), int(meta.get(_DROPPED, 0)), int(meta.get(_DROPPED_BYTES, 0))
    )


def open_read_only(path: Path) -> sqlite3.Connection:
    """An outbox file opened read-only, for inspection beside a running gateway."""
    if not path.exists():
        raise FileNotFoundError(f"no outbox at {path}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)


def _safe(letter: Letter, cap: int) -> tuple[str, str, bytes]:
    """Source and reason escaped, payload cut to ``cap`` bytes (the reason says so)."""
    reason = printable(letter.reason, 2000)
    payload = letter.payload
    if len(payload) > cap:
        reason += f" (payload truncated to {cap} of {len(payload)} bytes)"
        payload = payload[:cap]
    return printable(letter.source, 500), reason, payload


def _letter(row: tuple[int, int, str, str, bytes]) -> StoredLetter:
    return StoredLetter(int(row[0]), int(row[1]), str(row[2]), str(row[3]), bytes(row[4]))
