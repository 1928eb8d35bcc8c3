"""Replay high-water marks that survive a gateway restart (SQLite, next to the outbox).

Without them a restarted gateway accepts any counter once: a patch's repeated advert, or an
attacker's recording, would be stored a second time under a new receipt timestamp.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

_SCHEMA = "CREATE TABLE IF NOT EXISTS marks (address TEXT PRIMARY KEY, counter INTEGER NOT NULL)"
# A mark only ever moves up: deliveries may finish out of order after a cancel.
_UPSERT = (
    "INSERT INTO marks (address, counter) VALUES (?, ?)"
    " ON CONFLICT (address) DO UPDATE SET counter = max(counter, excluded.counter)"
)


class ReplayMarks:
    """The highest counter per patch address whose readings reached the gateway's outbox."""

    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash, as the outbox
        self._db.execute(_SCHEMA)

    def load(self) -> dict[str, int]:
        """Every stored mark."""
        with self._lock:
            rows = self._db.execute("SELECT address, counter FROM marks").fetchall()
        return {str(a): int(c) for a, c in rows}

    def raise_to(self, marks: Mapping[str, int]) -> None:
        """Raise the marks of these addresses (never lowers one), in one transaction."""
        if not marks:
            return
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_UPSERT, list(marks.items()))

    def forget(self, address: str) -> None:
        """Drop a patch's mark, after re-pairing it with a new key (its counter restarts)."""
        with self._lock:
            self._db.execute("DELETE FROM marks WHERE address = ?", (address.upper(),))

    def close(self) -> None:
        """Close the database; committed marks stay on disk."""
        with self._lock:
            self._db.close()
