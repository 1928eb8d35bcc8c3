"""The FHIR upload outbox: one SQLite file of Observations waiting for the FHIR server.

An Observation is written here (keyed by its reading identifier, so never twice) in the same
transaction that advances the reading cursor; it leaves only when the server has taken it
(``done``) or refused it for good (``failed``, with the server's reason). While the server is
down, items stay ``pending`` with a later next try: nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from infra.sqlite_db import SQLiteDatabase

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fhir_outbox (
        key TEXT PRIMARY KEY, device_id TEXT NOT NULL, ts_us INTEGER NOT NULL,
        doc TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS fhir_outbox_due ON fhir_outbox (status, next_at, ts_us)",
    "CREATE TABLE IF NOT EXISTS fhir_cursor (name TEXT PRIMARY KEY, ts_us INTEGER NOT NULL)",
)
_CURSOR = "readings"
_CHUNK = 500  # keys per IN (…) query, under SQLite's variable limit


class Status(StrEnum):
    """Where an outbox item stands."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Item:
    """One Observation to upload."""

    key: str
    device_id: str
    ts_us: int
    observation: dict[str, Any]
    attempts: int = 0


class FhirOutbox:
    """The outbox in its own SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteDatabase(path)
        with self._db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def cursor(self) -> int | None:
        """The newest reading time already looked at, or None before the first pass."""
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT ts_us FROM fhir_cursor WHERE name = ?", (_CURSOR,)
            ).fetchone()
        return None if row is None else int(row[0])

    def known(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are in the outbox already (in any state)."""
        found: set[str] = set()
        with self._db.reading() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key FROM fhir_outbox WHERE key IN ({marks})", chunk)
                found |= {r[0] for r in rows}
        return found

    def enqueue(self, items: Iterable[Item], cursor_us: int, now: float) -> int:
        """Add ``items`` (a key already there is left alone) and move the cursor; how many new."""
        rows = [
            (i.key, i.device_id, i.ts_us, json.dumps(i.observation), Status.PENDING, now)
            for i in items
        ]
        with self._db.transaction() as conn:
            added = conn.executemany(
                "INSERT OR IGNORE INTO fhir_outbox (key, device_id, ts_us, doc, status, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            ).rowcount
            conn.execute(
                "INSERT INTO fhir_cursor VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET ts_us = max(ts_us, excluded.ts_us)",
                (_CURSOR, cursor_us),
            )
        return max(added, 0)

    def due(self, now: float, limit: int) -> list[Item]:
        """Pending items whose next try has come, oldest reading first."""
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT key, device_id, ts_us, doc, attempts FROM fhir_outbox"
                " WHERE status = ? AND next_at <= ? ORDER BY ts_us, key LIMIT ?",
                (Status.PENDING, now, limit),
            ).fetchall()
        return [Item(k, d, int(t), json.loads(doc), int(a)) for k, d, t, doc, a in rows]

    def settle(
        self,
        done: Sequence[str] = (),
        failed: Sequence[tuple[str, str]] = (),
        retry: Sequence[tuple[str, float, str]] = (),
    ) -> None:
        """Record one upload attempt: ``done`` keys, ``failed`` (key, reason) and ``retry``
        (key, next try, error) items, all in one transaction."""
        with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE fhir_outbox SET status = ?, attempts = attempts + 1, last_error = ''"
                " WHERE key = ?",
                [(Status.DONE, k) for k in done],
            )
            conn.executemany(
                "UPDATE fhir_outbox SET status = ?, attempts = attempts + 1, last_error = ?"
                " WHERE key = ?",
                [(Status.FAILED, reason[:2000], k) for k, reason in failed],
            )
            conn.executemany(
                "UPDATE fhir_outbox SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE key = ?",
                [(at, error[:2000], k) for k, at, error in retry],
            )

    def counts(self) -> dict[str, int]:
        """How many items are in each state."""
        with self._db.reading() as conn:
            rows = conn.execute("SELECT status, count(*) FROM fhir_outbox GROUP BY status")
            found = {str(s): int(n) for s, n in rows}
        return {s.value: found.get(s.value, 0) for s in Status}

    def failures(self, limit: int = 100) -> list[tuple[str, str]]:
        """(key, reason) of items the server refused for good, most recent reading first."""
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT key, last_error FROM fhir_outbox WHERE status = ?"
                " ORDER BY ts_us DESC LIMIT ?",
                (Status.FAILED, limit),
            ).fetchall()
        return [(str(k), str(e)) for k, e in rows]

    def prune(self, before_us: int) -> int:
        """Forget uploaded items of readings older than ``before_us`` (beyond any rescan)."""
        with self._db.transaction() as conn:
            gone = conn.execute(
                "DELETE FROM fhir_outbox WHERE status = ? AND ts_us < ?", (Status.DONE, before_us)
            ).rowcount
        return max(gone, 0)
