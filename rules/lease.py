"""The rules lease: one active replica at a time, by a PostgreSQL advisory lock, and its checkpoint.

Rule state is per series, so exactly one of the ``vigil rules run`` replicas may evaluate. The
active one holds ``pg_try_advisory_lock(key)`` on a dedicated session: PostgreSQL releases it
when that session ends, which a killed process's closed socket does at once, and a vanished
machine's within ~30 s (TCP keepalives on both sides, ``tcp_user_timeout``). A replica whose
lease session is lost stops evaluating before it tries to take the lease again.

The checkpoint (engine snapshot and alert book) lives in the ``rules_checkpoints`` table of the
telemetry database, written through the lease session itself: a replica that lost the lease
can no longer overwrite its successor's checkpoint (the write fails with the session), and a
standby on another machine reads it when it takes over. SQLite deployments have no lease: one
replica, with its checkpoint in a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from typing import LiteralString, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from infra.errors import InfrastructureUnavailable, StorageUnavailable
from infra.postgres import is_lost, with_defaults
from rules.checkpoint import Checkpoint, CheckpointStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# The server drops a session whose client vanished without closing it (no FIN: a crash of the
# machine, a partition) after idle + interval * count seconds, releasing the lock.
_SERVER_KEEPALIVES: tuple[LiteralString, ...] = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 30000",
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
# Who holds a lease: for operators and tests (the lease key is ``lease_key(name)``).
HOLDER = """
    SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
"""
_HOLDS_LOCK = """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
          AND ((classid::bigint << 32) | objid::bigint) = %s
    )
"""
_CHECKPOINT_TABLE = """
    CREATE TABLE IF NOT EXISTS rules_checkpoints (
        name text PRIMARY KEY,
        engine bytea NOT NULL,
        book bytea NOT NULL,
        holder text NOT NULL,
        saved_at timestamptz NOT NULL DEFAULT now()
    )
"""
_LOAD = "SELECT engine, book FROM rules_checkpoints WHERE name = %s"
_SAVE = """
    INSERT INTO rules_checkpoints (name, engine, book, holder) VALUES (%s, %s, %s, %s)
    ON CONFLICT (name) DO UPDATE
    SET engine = EXCLUDED.engine, book = EXCLUDED.book, holder = EXCLUDED.holder,
        saved_at = now()
"""


class LeaseLost(InfrastructureUnavailable):
    """The lease is not (or no longer) held: only its holder may write the checkpoint."""


def lease_key(name: str) -> int:
    """The advisory lock key of lease ``name``: 63 bits of a hash, so never negative."""
    digest = hashlib.blake2b(f"vigil.rules.lease:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class AdvisoryLease:
    """A session-level advisory lock on a dedicated autocommit connection.

    Synchronous, thread-safe; call from async code through ``asyncio.to_thread``.
    """

    def __init__(self, conninfo: str, *, name: str = "rules", holder: str = "vigil-rules") -> None:
        # The holder names the session (pg_stat_activity.application_name): who holds the lease.
        self.conninfo = make_conninfo(with_defaults(conninfo), application_name=holder)
        self.name = name
        self.holder = holder
        self.key = lease_key(name)
        self.held = False
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take the lease if no one holds it; True if it is ours (now or already)."""
        with self._lock:
            if self.held:
                return True
            conn = self._connection()
            try:
                row = conn.execute(_TRY_LOCK, (self.key,)).fetchone()
            except psycopg.Error as exc:
                raise self._lost(conn, exc, "cannot ask for the rules lease") from exc
            self.held = bool(row and row[0])
            return self.held

    def check(self) -> bool:
        """Whether the lease is still ours: its session is alive and holds the lock."""
        with self._lock:
            if not self.held or self._conn is None:
                return False
            try:
                row = self._conn.execute(_HOLDS_LOCK, (self.key,)).fetchone()
            except psycopg.Error as exc:
                log.warning("rules lease session lost: %s", exc)
                self._drop()
                return False
            self.held = bool(row and row[0])
            return self.held

    def run(self, work: Callable[[psycopg.Connection[TupleRow]], T]) -> T:
        """``work`` on the lease session, only while the lease is held (else LeaseLost)."""
        with self._lock:
            if not self.held or self._conn is None:
                raise LeaseLost(f"the rules lease {self.name!r} is not held")
            conn = self._conn
            try:
                return work(conn)
            except psycopg.Error as exc:
                if not is_lost(conn, exc):
                    raise
                raise self._lost(conn, exc, "rules lease session lost") from exc

    def release(self) -> None:
        """Give the lease up (closing its session releases the lock in any case)."""
        with self._lock:
            # Unlock explicitly: the server frees a closed session's locks only once its
            # backend has exited, which a standby asking at once could still race.
            if self.held and self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()

    close = release

    def _connection(self) -> psycopg.Connection[TupleRow]:
        """The lease session, opened (with server-side keepalives) if there is none."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"cannot connect for the rules lease: {exc}") from exc
        try:
            for statement in _SERVER_KEEPALIVES:
                conn.execute(statement)
        except psycopg.Error as exc:
            conn.close()
            raise StorageUnavailable(f"cannot set up the rules lease session: {exc}") from exc
        self._conn = conn
        return conn

    def _lost(
        self, conn: psycopg.Connection[TupleRow], exc: psycopg.Error, what: str
    ) -> InfrastructureUnavailable:
        """Forget a broken session (and with it the lease); the error to raise."""
        self._drop()
        return LeaseLost(f"{what}: {exc}") if is_lost(conn, exc) else StorageUnavailable(str(exc))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.held = False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


class LeasedCheckpoints:
    """The checkpoint in ``rules_checkpoints``, read and written on the lease session.

    ``fallback`` (the file checkpoint of a single-process deployment) is read when the table
    holds none yet, so an upgrade to replicas starts from the last file checkpoint.
    """

    def __init__(
        self, lease: AdvisoryLease, *, name: str = "rules", fallback: CheckpointStore | None = None
    ) -> None:
        self.lease = lease
        self.name = name
        self.fallback = fallback
        self._table_ready = False

    def _ensure_table(self, conn: psycopg.Connection[TupleRow]) -> None:
        if not self._table_ready:
            conn.execute(_CHECKPOINT_TABLE)
            self._table_ready = True

    def load(self) -> Checkpoint | None:
        """The stored checkpoint (creating the table on first use), else the fallback's."""

        def load(conn: psycopg.Connection[TupleRow]) -> Checkpoint | None:
            self._ensure_table(conn)
            row = conn.execute(_LOAD, (self.name,)).fetchone()
            return None if row is None else Checkpoint(bytes(row[0]), bytes(row[1]))

        checkpoint = self.lease.run(load)
        if checkpoint is None and self.fallback is not None:
            with contextlib.suppress(OSError):
                return self.fallback.load()
        return checkpoint

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint; LeaseLost if the lease is not held."""
        params = (self.name, checkpoint.engine, checkpoint.book, self.lease.holder)

        def save(conn: psycopg.Connection[TupleRow]) -> None:
            self._ensure_table(conn)
            conn.execute(_SAVE, params)

        self.lease.run(save)

    def __str__(self) -> str:
        return f"rules_checkpoints[{self.name}]"
