"""Readings taken while the wall clock was not trusted, held until it is, then re-stamped.

Each reading is kept with the boot id and the monotonic time of its receipt. Once the clock is
trusted, ``receipt = wall_now - (monotonic_now - monotonic_at_receipt)`` — exact within one
boot. Readings from an earlier boot cannot be placed in time and are returned for
dead-lettering. SQLite on disk (next to the outbox) when a path is given, so a restart before
NTP comes back loses nothing; in memory otherwise.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.reading import Reading

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY AUTOINCREMENT, boot TEXT NOT NULL,"
    " mono_us INTEGER NOT NULL, device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,"
    " unit TEXT NOT NULL, ts_us INTEGER NOT NULL, seq INTEGER NOT NULL)"
)
_INSERT = (
    "INSERT INTO held (boot, mono_us, device_id, metric, value, unit, ts_us, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a reading was received, on a clock that never jumps."""

    boot_id: str
    monotonic_us: int


@dataclass(frozen=True, slots=True)
class Released:
    """Held readings taken out: re-stamped ones, and those from another boot."""

    ids: list[int]
    restamped: list[Reading]
    unplaceable: list[Reading]


class HeldReadings:
    """A bounded store of readings waiting for a trusted clock."""

    def __init__(self, path: Path | None, limit: int) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self._lock = threading.Lock()
        target = ":memory:" if path is None else str(path)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.count = int(self._db.execute("SELECT count(*) FROM held").fetchone()[0])

    def hold(self, readings: Sequence[Reading], stamp: Stamp) -> list[Reading]:
        """Keep ``readings``; return those that did not fit under the limit."""
        with self._lock:
            room = max(0, self.limit - self.count)
            kept, refused = list(readings[:room]), list(readings[room:])
            if kept:
                rows = [(stamp.boot_id, stamp.monotonic_us, *r) for r in kept]
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(_INSERT, rows)
                self.count += len(kept)
        return refused

    def release(self, limit: int, now: Stamp, wall_us: int) -> Released:
        """Take out the oldest ``limit`` readings, re-stamped against ``now`` / ``wall_us``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, boot, mono_us, device_id, metric, value, unit, ts_us, seq"
                " FROM held ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        ids: list[int] = []
        restamped: list[Reading] = []
        unplaceable: list[Reading] = []
        for row_id, boot, mono_us, device_id, metric, value, unit, ts_us, seq in rows:
            ids.append(int(row_id))
            reading = Reading(device_id, metric, float(value), unit, int(ts_us), int(seq))
            if boot != now.boot_id:
                unplaceable.append(reading)
                continue
            at = wall_us - (now.monotonic_us - int(mono_us))
            restamped.append(reading._replace(ts_us=at))
        return Released(ids, restamped, unplaceable)

    def delete(self, ids: Sequence[int]) -> None:
        """Forget released readings (after the sink took them)."""
        if not ids:
            return
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM held WHERE id = ?", [(i,) for i in ids])
            self.count -= len(ids)

    def close(self) -> None:
        """Close the database; what is held stays on disk (if on disk)."""
        with self._lock:
            self._db.close()
