"""Console sessions kept in the service database, so that every API process knows them.

With sessions in one process's memory, an API run as several workers (docs/service.md) logs a
nurse out whenever a request lands on another worker, and a restart logs everybody out. Here the
session lives in a ``console_sessions`` table of the service store's database (SQLite or
PostgreSQL), so any worker answers any browser and a restart keeps people logged in.

The table holds the SHA-256 of each session id, never the id itself: a copy of the table (a
backup, a read-only database role) gives no cookie that works. A session's last-seen time is
written at most every ``refresh_s`` (a minute, or a tenth of the idle limit if that is shorter),
not on every request, so idle expiry is exact to within that.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from infra.statement_db import StatementDatabase
from service.api.schemas import Principal
from service.console.session import IDLE_S, LIFETIME_S, MAX_SESSIONS, Session, new_session

SEEN_REFRESH_S = 60.0

_TABLE = """
    CREATE TABLE IF NOT EXISTS console_sessions (
        digest TEXT PRIMARY KEY,
        principal TEXT NOT NULL,
        token_key TEXT NOT NULL,
        csrf TEXT NOT NULL,
        started_s DOUBLE PRECISION NOT NULL,
        seen_s DOUBLE PRECISION NOT NULL
    )
"""
_SEEN_INDEX = "CREATE INDEX IF NOT EXISTS console_sessions_seen ON console_sessions (seen_s)"
_INSERT = """
    INSERT INTO console_sessions (digest, principal, token_key, csrf, started_s, seen_s)
    VALUES (%s, %s, %s, %s, %s, %s)
"""
_SELECT = """
    SELECT principal, token_key, csrf, started_s, seen_s FROM console_sessions WHERE digest = %s
"""
_TOUCH = "UPDATE console_sessions SET seen_s = %s WHERE digest = %s"
_DELETE = "DELETE FROM console_sessions WHERE digest = %s"
# Expired sessions, then all but the newest ``max`` (logins cannot fill the table).
_PRUNE_EXPIRED = "DELETE FROM console_sessions WHERE seen_s < %s OR started_s < %s"
_PRUNE_OLDEST = """
    DELETE FROM console_sessions WHERE digest IN (
        SELECT digest FROM console_sessions ORDER BY seen_s DESC, digest LIMIT -1 OFFSET %s)
"""
_PRUNE_OLDEST_PG = _PRUNE_OLDEST.replace("LIMIT -1 OFFSET", "OFFSET")
_COUNT = "SELECT count(*) FROM console_sessions"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class StoredSessions:
    """Sessions in the database at ``url`` (the service store's URL); same rules as
    ``SessionStore``, with a wall clock (processes must agree on it)."""

    def __init__(
        self,
        url: str,
        idle_s: float = IDLE_S,
        lifetime_s: float = LIFETIME_S,
        clock: Callable[[], float] = time.time,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self.refresh_s = min(SEEN_REFRESH_S, idle_s / 10)
        self._clock = clock
        self._max = max_sessions
        self._db = StatementDatabase(url, name="console sessions")
        self._db.execute(_TABLE)
        self._db.execute(_SEEN_INDEX)

    def start(self, who: Principal, token_key: str) -> Session:
        """A new session for ``who``; its id goes into the cookie."""
        now = self._clock()
        session = new_session(who, token_key, now)
        self._db.execute(_PRUNE_EXPIRED, (now - self.idle_s, now - self.lifetime_s))
        self._db.execute(
            _INSERT,
            (_digest(session.id), who.model_dump_json(), token_key, session.csrf, now, now),
        )
        self._db.execute(_PRUNE_OLDEST_PG if self._db.postgres else _PRUNE_OLDEST, (self._max,))
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session ``session_id`` names (and mark it seen), or None."""
        if not session_id or len(session_id) > 128:
            return None
        now = self._clock()
        digest = _digest(session_id)
        rows = self._db.execute(_SELECT, (digest,))
        if not rows:
            return None
        principal, token_key, csrf, started, seen = rows[0]
        if now - seen > self.idle_s or now - started > self.lifetime_s:
            self._db.execute(_DELETE, (digest,))
            return None
        if now - seen >= self.refresh_s:
            self._db.execute(_TOUCH, (now, digest))
            seen = now
        who = Principal.model_validate_json(principal)
        return Session(session_id, who, token_key, csrf, float(started), float(seen))

    def end(self, session_id: str | None) -> None:
        """Forget a session (logout)."""
        if session_id:
            self._db.execute(_DELETE, (_digest(session_id),))

    def __len__(self) -> int:
        [(count,)] = self._db.execute(_COUNT)
        return int(count)

    def close(self) -> None:
        """Close the database connection(s)."""
        self._db.close()
