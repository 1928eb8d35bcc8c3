"""One PostgreSQL connection layer: timeouts, keepalives, reconnect, and one outage error.

Every PostgreSQL-backed store (telemetry, service desk) runs its work through a
``PgConnection``: a lost server or session becomes ``StorageUnavailable`` (held and retried by
the consume loop), anything else is the statement's own error (a bug or bad data).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from infra.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[psycopg.Connection[TupleRow]], T]

# SQLSTATEs that say the server or our session went away, not that the statement was wrong:
# class 08 (connection exception), 57P (shutdown, crash, still starting up), and 25006: after a
# failover the connection may sit on a demoted, now read-only server.
_LOST_SQLSTATES = ("08", "57P", "25006")
# Without these a query on a half-open TCP connection (a partition, no RST) waits forever and a
# connect to an unreachable host for minutes; a conninfo that sets them wins.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def with_defaults(conninfo: str) -> str:
    """``conninfo`` with our timeouts and keepalives wherever it does not set its own."""
    given = conninfo_to_dict(conninfo)
    defaults = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in given}
    return make_conninfo(conninfo, **defaults)


def is_lost(conn: psycopg.Connection[TupleRow], exc: psycopg.Error) -> bool:
    """Whether ``exc`` means the connection or server went away rather than a failed statement."""
    return conn.closed or (exc.sqlstate or "").startswith(_LOST_SQLSTATES)


class PgConnection:
    """One autocommit connection, reopened on demand, shared between threads under a lock.

    A lost connection (server restart, failover, network) is reopened on the next call; a call
    that cannot reach the server raises ``StorageUnavailable``.
    """

    def __init__(self, conninfo: str, *, name: str = "PostgreSQL", connect: bool = True) -> None:
        self.conninfo = with_defaults(conninfo)
        self.name = name
        # Re-entrant: a store's transaction block may call helpers that also run work.
        self.lock = threading.RLock()
        self._closed = False
        self._conn: psycopg.Connection[TupleRow] | None = None
        if connect:
            # Now, so that a wrong conninfo shows at startup, not on the first message.
            with self.lock:
                self._conn = self._connect()

    def run(self, work: Work[T], *, retry: bool = True) -> T:
        """``work`` on a live connection, under the lock; a lost server is StorageUnavailable.

        With ``retry``, work that fails on a connection opened by an earlier call, because that
        connection is gone, runs once more on a new one: an idle connection may have died long
        ago (restart, failover), which says nothing about the server now. Only work that is
        safe to repeat may be retried.
        """
        with self.lock:
            second_chance = retry
            while True:
                reopened = self._conn is None or self._conn.closed
                conn = self._live()
                try:
                    return work(conn)
                except psycopg.Error as exc:
                    if not is_lost(conn, exc):
                        raise
                    self._drop()
                    if reopened or not second_chance:
                        raise StorageUnavailable(f"lost {self.name}: {exc}") from exc
                    log.info("%s connection found lost (%s); reconnecting", self.name, exc)
                    second_chance = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """One transaction on a live connection, under the lock; losing the server is an outage.

        A lost server or session raises ``StorageUnavailable``; the block is never re-run here:
        the caller repeats the whole transaction (the consume loop does, by holding the message).
        """
        with self.lock:
            conn = self.run(_alive)  # an idle connection found dead is replaced first
            try:
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                if not is_lost(conn, exc):
                    raise
                self._drop()
                raise StorageUnavailable(f"lost {self.name} mid-transaction: {exc}") from exc

    def close(self) -> None:
        """Release the connection; it is unusable afterwards."""
        with self.lock:
            self._closed = True
            self._drop()

    def _live(self) -> psycopg.Connection[TupleRow]:
        """The open connection, reopened first if it was lost; call with the lock held."""
        if self._closed:
            raise RuntimeError(f"{self.name} connection is closed")
        if self._conn is None or self._conn.closed:
            self._drop()
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[TupleRow]:
        """A new autocommit connection, or StorageUnavailable."""
        try:
            # Autocommit so every transaction is an explicit conn.transaction() block.
            return psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            # libpq reports every connection failure alike (refused, starting up, too many
            # clients, even a wrong role): the caller retries and logs why.
            raise StorageUnavailable(f"cannot connect to {self.name}: {exc}") from exc

    def _drop(self) -> None:
        """Close and forget the connection, however broken it is."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _alive(conn: psycopg.Connection[TupleRow]) -> psycopg.Connection[TupleRow]:
    """``conn`` once a round trip proved it still reaches the server."""
    conn.execute("SELECT 1")
    return conn
