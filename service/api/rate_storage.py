"""API rate budgets kept in the service database, so that every API process spends the same ones.

In memory, each API process (``uvicorn --workers N``, or N containers behind a proxy) keeps its
own windows, so a token gets N times its requests and a password guesser N times its tries.
This is a storage of the ``limits`` library over a ``api_rate_counters`` table of the service
database: its sliding-window-counter strategy (``SlidingWindowCounterRateLimiter``) counts hits
in fixed windows, one row per key and window, and weighs the previous window by how much of it
still overlaps the last ``expiry`` seconds.

A hit is one statement: an upsert whose condition is evaluated on the row as locked (the
``DO UPDATE … WHERE`` of PostgreSQL's ``ON CONFLICT``; SQLite writes one statement at a time),
so concurrent processes never grant more than the budget and no hit has to be taken back. On
PostgreSQL the table is UNLOGGED: no WAL, so no disk flush per request under
``synchronous_commit=on``; a crash of the server empties it, which forgets at most one period
of counts. Its connections are not tested before each statement (that would double the round
trips): a statement on a connection that died idle fails, and the caller counts in memory for
that request. Rows of windows that ended are deleted at most once a minute per process.

Times are the processes' wall clocks (``time.time``), as the library's; API hosts run NTP.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import psycopg
from limits.storage import Storage
from limits.storage.base import SlidingWindowCounterSupport, TimestampedSlidingWindow

from infra.errors import StorageUnavailable
from infra.statement_db import StatementDatabase

PRUNE_EVERY_S = 60.0

_TABLE = """
    CREATE {kind} IF NOT EXISTS api_rate_counters (
        key TEXT PRIMARY KEY,
        hits BIGINT NOT NULL,
        expires_s DOUBLE PRECISION NOT NULL
    )
"""
_EXPIRY_INDEX = (
    "CREATE INDEX IF NOT EXISTS api_rate_counters_expiry ON api_rate_counters (expires_s)"
)
# A counter whose window has ended starts again from this hit (in the same statement, so two
# processes cannot both restart it).
_INCR = """
    INSERT INTO api_rate_counters AS c (key, hits, expires_s) VALUES (%s, %s, %s)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN c.expires_s <= %s THEN excluded.hits ELSE c.hits + excluded.hits END,
        expires_s = CASE WHEN c.expires_s <= %s THEN excluded.expires_s ELSE c.expires_s END
    RETURNING hits
"""
# Spend ``amount`` of the current window's counter if the weighted count leaves room for it:
# floor(weight × previous + current) + amount <= limit, written without floor (SQLite may lack
# it) as weight × previous + current < limit - amount + 1. The insert's condition covers a
# window with no row yet; the update's is evaluated on the row as locked, after any concurrent
# hit, so two processes cannot both take the last of a budget. A row back means spent.
_ACQUIRE = """
    INSERT INTO api_rate_counters AS c (key, hits, expires_s)
    SELECT %(current)s, %(amount)s, %(expires)s
    WHERE %(weight)s * (
            SELECT coalesce(max(hits), 0) FROM api_rate_counters
            WHERE key = %(previous)s AND expires_s > %(now)s)
        + (SELECT coalesce(max(hits), 0) FROM api_rate_counters
            WHERE key = %(current)s AND expires_s > %(now)s)
        < %(room)s
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN c.expires_s <= %(now)s THEN excluded.hits ELSE c.hits + excluded.hits END,
        expires_s = CASE WHEN c.expires_s <= %(now)s THEN excluded.expires_s ELSE c.expires_s END
    WHERE %(weight)s * (
            SELECT coalesce(max(hits), 0) FROM api_rate_counters
            WHERE key = %(previous)s AND expires_s > %(now)s)
        + (CASE WHEN c.expires_s <= %(now)s THEN 0 ELSE c.hits END)
        < %(room)s
    RETURNING hits
"""
_GET = "SELECT hits, expires_s FROM api_rate_counters WHERE key = %s AND expires_s > %s"
_GET_TWO = """
    SELECT key, hits FROM api_rate_counters WHERE key IN (%s, %s) AND expires_s > %s
"""
_CLEAR = "DELETE FROM api_rate_counters WHERE key = %s"
_PRUNE = "DELETE FROM api_rate_counters WHERE expires_s <= %s"
_RESET = "DELETE FROM api_rate_counters"


class DatabaseRateStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """``limits`` storage over the service database at ``url`` (SQLite or PostgreSQL).

    Every failure of the database comes out as ``limits.errors.StorageError`` (the caller
    decides what a budget is worth while the database is away: ``service.api.rate``).
    """

    STORAGE_SCHEME = ["vigil-database"]  # noqa: RUF012  (the type limits declares)

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(wrap_exceptions=True)
        self._clock = clock
        self._db = StatementDatabase(url, name="API rate budgets", check=False)
        self._db.execute(_TABLE.format(kind="UNLOGGED TABLE" if self._db.postgres else "TABLE"))
        self._db.execute(_EXPIRY_INDEX)
        self._pruned_s = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        """What the database may raise: an outage, a failed statement, a locked SQLite file."""
        return (StorageUnavailable, psycopg.Error, sqlite3.Error)

    # ---- Storage ----------------------------------------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter (a new one lives ``expiry`` seconds); its count."""
        now = self._clock()
        self._prune(now)
        rows = self._db.execute(_INCR, (key, amount, now + expiry, now, now))
        return int(rows[0][0])

    def get(self, key: str) -> int:
        """The count of ``key`` (0 once its window has ended)."""
        rows = self._db.execute(_GET, (key, self._clock()))
        return int(rows[0][0]) if rows else 0

    def get_expiry(self, key: str) -> float:
        """When ``key``'s counter ends (now if it has none)."""
        now = self._clock()
        rows = self._db.execute(_GET, (key, now))
        return float(rows[0][1]) if rows else now

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            self._db.execute("SELECT 1")
        except self.base_exceptions:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter."""
        self._db.execute(_RESET)
        return None

    def clear(self, key: str) -> None:
        """Forget ``key``'s counter."""
        self._db.execute(_CLEAR, (key,))

    # ---- SlidingWindowCounterSupport --------------------------------------------------------

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Spend ``amount`` unless the weighted count of the two windows would pass ``limit``."""
        if amount > limit:
            return False
        now = self._clock()
        self._prune(now)
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        spent = self._db.execute(
            _ACQUIRE,
            {
                "previous": previous_key,
                "current": current_key,
                "amount": amount,
                # A counter outlives its window by one more, to be the next one's previous.
                "expires": now + 2 * expiry,
                "weight": _previous_ttl(now, expiry) / expiry,
                "room": limit - amount + 1,
                "now": now,
            },
        )
        return bool(spent)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """(previous count, its weight in seconds, current count, seconds to its end)."""
        now = self._clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        return self._window(previous_key, current_key, expiry, now)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        """Forget both windows of ``key``."""
        for window_key in self.sliding_window_keys(key, expiry, self._clock()):
            self.clear(window_key)

    def _window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        # The same arithmetic as limits' MemoryStorage, so both strategies agree.
        counts = dict(self._db.execute(_GET_TWO, (previous_key, current_key, now)))
        previous, current = int(counts.get(previous_key, 0)), int(counts.get(current_key, 0))
        previous_ttl = _previous_ttl(now, expiry) if previous else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl

    def _prune(self, now: float) -> None:
        if now - self._pruned_s >= PRUNE_EVERY_S:
            self._pruned_s = now
            self._db.execute(_PRUNE, (now,))

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()


def _previous_ttl(now: float, expiry: int) -> float:
    """Seconds of the previous window still inside the last ``expiry`` seconds."""
    return (1 - (((now - expiry) / expiry) % 1)) * expiry
