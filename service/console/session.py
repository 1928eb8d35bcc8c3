"""Console sessions: a random id in an HttpOnly cookie, the caller kept on the server.

The bearer token is checked once, at login; the session then names the principal, the token's
rate-limit key and the CSRF token. Sessions end at logout, after ``idle`` without a request, or
``lifetime`` after login, whichever comes first. ``SessionStore`` keeps them in this process's
memory (tests, a single process); the API built from settings keeps them in the service database
(``stored_sessions.StoredSessions``), so that several worker processes share them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from service.api.schemas import Principal

COOKIE = "vigil_session"
IDLE_S = 30 * 60.0
LIFETIME_S = 12 * 3600.0
MAX_SESSIONS = 10_000  # the oldest are dropped beyond this, so logins cannot exhaust memory


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser."""

    id: str
    who: Principal
    token_key: str  # the digest the token's API rate budgets are kept under
    csrf: str
    started: float
    seen: float


def new_session(who: Principal, token_key: str, now: float) -> Session:
    """A session of ``who`` starting ``now``, with a fresh random id and CSRF token."""
    return Session(
        id=secrets.token_urlsafe(32),
        who=who,
        token_key=token_key,
        csrf=secrets.token_urlsafe(32),
        started=now,
        seen=now,
    )


class Sessions(Protocol):
    """Where the console's sessions are kept."""

    lifetime_s: float

    def start(self, who: Principal, token_key: str) -> Session:
        """A new session for ``who``; its id goes into the cookie."""
        ...

    def get(self, session_id: str | None) -> Session | None:
        """The live session ``session_id`` names (and mark it seen), or None."""
        ...

    def end(self, session_id: str | None) -> None:
        """Forget a session (logout)."""
        ...


class SessionStore:
    """The process's sessions (thread-safe: sync routes run in a thread pool)."""

    def __init__(
        self,
        idle_s: float = IDLE_S,
        lifetime_s: float = LIFETIME_S,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._max = max_sessions
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def start(self, who: Principal, token_key: str) -> Session:
        """A new session for ``who``; its id goes into the cookie."""
        session = new_session(who, token_key, self._clock())
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session ``session_id`` names (and mark it seen), or None."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.started > self.lifetime_s:
                del self._sessions[session_id]
                return None
            session = replace(session, seen=now)
            self._sessions[session_id] = session
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        """Forget a session (logout)."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
