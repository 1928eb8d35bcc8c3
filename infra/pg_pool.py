"""A pool of PostgreSQL connections (psycopg_pool) with the outage rules of ``PgConnection``.

Threads each take their own connection, so an API's concurrent requests (and a worker's tick
beside its intake) run in parallel instead of queueing on one connection. A lost server or
session is ``StorageUnavailable``; anything else is the statement's own error.

While an outage is suspected (a connection was lost, or none could be had), every call first
tries one direct connection, so calls fail at once with the server's reason instead of waiting
out the pool's timeout; the first call that gets through clears the suspicion.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from infra.errors import StorageUnavailable
from infra.postgres import Work, is_lost, with_defaults

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[TupleRow]

DEFAULT_MAX_SIZE = 8
DEFAULT_TIMEOUT_S = 10.0  # waiting for a free connection before the store counts as unavailable


class PgPool:
    """Autocommit connections for many threads; ``connection()`` lends one, ``transaction()``
    runs one transaction on one."""

    def __init__(
        self,
        conninfo: str,
        *,
        name: str = "PostgreSQL",
        min_size: int = 1,
        max_size: int = DEFAULT_MAX_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check: bool = True,
    ) -> None:
        """``check``: test each connection before lending it (one more round trip); off where
        a statement failing on a connection that died idle costs nothing (its caller falls
        back) and the round trip would double each call."""
        self.conninfo = with_defaults(conninfo)
        self.name = name
        self._suspect = False
        self._probe()  # now, so that a wrong conninfo or a down server shows at startup
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            self.conninfo,
            min_size=min_size,
            max_size=max(min_size, max_size),
            kwargs={"autocommit": True},
            # an idle connection found dead is replaced
            check=ConnectionPool.check_connection if check else None,
            timeout=timeout_s,
            name=name,
            open=False,
        )
        self._pool.open(wait=False)

    def _probe(self) -> None:
        """One direct connection, closed at once; StorageUnavailable when none can be had."""
        try:
            psycopg.connect(self.conninfo, autocommit=True).close()
        except psycopg.OperationalError as exc:
            # libpq reports every connection failure alike (refused, starting up, too many
            # clients, even a wrong role): the caller retries and logs why.
            raise StorageUnavailable(f"cannot connect to {self.name}: {exc}") from exc
        self._suspect = False

    @contextlib.contextmanager
    def connection(self, *, what: str = "") -> Iterator[Conn]:
        """A live connection for the block; a lost server is StorageUnavailable."""
        if self._suspect:
            self._probe()
        try:
            conn = self._pool.getconn()
        except PoolTimeout as exc:
            self._suspect = True
            raise StorageUnavailable(f"no connection to {self.name}: {exc}") from exc
        try:
            yield conn
        except psycopg.Error as exc:
            if not is_lost(conn, exc):
                raise
            self._suspect = True
            raise StorageUnavailable(f"lost {self.name}{what}: {exc}") from exc
        finally:
            self._pool.putconn(conn)  # a broken one is discarded and replaced by the pool

    def run(self, work: Work[T]) -> T:
        """``work`` on a pooled connection, outside any transaction."""
        with self.connection() as conn:
            return work(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One transaction on one pooled connection; never re-run here (the caller repeats)."""
        with self.connection(what=" mid-transaction") as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        """Close every connection; the pool is unusable afterwards."""
        self._pool.close()
