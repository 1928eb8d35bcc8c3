"""Persistence: a small repository protocol and its SQLite implementation (stdlib sqlite3).

``service.store_postgres.PostgresStore`` is the PostgreSQL implementation; ``open_service_store``
picks one from a URL.

Domain objects are stored as JSON documents next to the columns queries filter on, so a
PostgreSQL implementation (jsonb) can sit behind the same protocol with the same SQL shape.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from service import audit
from service.audit import AuditEntry
from service.model import (
    Delivery,
    Device,
    Engineer,
    OutboxItem,
    OutboxStatus,
    Patient,
    Site,
    Ticket,
    TicketState,
)

M = TypeVar("M", bound=BaseModel)


class ServiceStore(Protocol):
    """What the service backbone needs from storage."""

    def atomic(self) -> AbstractContextManager[None]:
        """Group the calls inside into one transaction."""
        ...

    def close(self) -> None:
        """Release the database; the store is unusable afterwards."""
        ...

    def put_site(self, site: Site) -> None:
        """Insert or replace a site."""
        ...

    def site(self, site_id: str) -> Site | None:
        """One site, or None."""
        ...

    def sites(self) -> list[Site]:
        """All sites by id."""
        ...

    def put_device(self, device: Device) -> None:
        """Insert or replace a device."""
        ...

    def device(self, device_id: str) -> Device | None:
        """One device, or None."""
        ...

    def devices(self, site_id: str | None = None) -> list[Device]:
        """Devices by id, optionally of one site."""
        ...

    def put_patient(self, patient: Patient) -> None:
        """Insert or replace a patient."""
        ...

    def patient(self, patient_id: str) -> Patient | None:
        """One patient, or None."""
        ...

    def put_engineer(self, engineer: Engineer) -> None:
        """Insert or replace an engineer."""
        ...

    def engineer(self, engineer_id: str) -> Engineer | None:
        """One engineer, or None."""
        ...

    def engineers(self, region: str | None = None) -> list[Engineer]:
        """Engineers by id, optionally of one region."""
        ...

    def put_ticket(self, ticket: Ticket) -> None:
        """Insert or replace a ticket."""
        ...

    def ticket(self, ticket_id: str) -> Ticket | None:
        """One ticket, or None."""
        ...

    def tickets(
        self,
        states: Iterable[TicketState] | None = None,
        device_ids: Iterable[str] | None = None,
    ) -> list[Ticket]:
        """Tickets by id, optionally filtered by state and device."""
        ...

    def append_audit(
        self, at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any]
    ) -> AuditEntry:
        """Chain and store one audit entry atomically; return it."""
        ...

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        ...

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep one notification delivery attempt."""
        ...

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Delivery attempts in the order recorded, optionally of one event."""
        ...

    def enqueue_notifications(self, items: Iterable[OutboxItem]) -> None:
        """Add pending notifications to the outbox; a key already there is left as it is."""
        ...

    def update_notification(self, item: OutboxItem) -> None:
        """Replace an outbox item (attempts, status, next try) by its key."""
        ...

    def pending_notifications(self, limit: int = 100) -> list[OutboxItem]:
        """Pending outbox items, earliest next try first."""
        ...

    def notifications(self, event_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item (any status) by key, optionally of one event."""
        ...

    def cursor(self, name: str) -> datetime | None:
        """A persisted position (e.g. the last breach-scan instant), or None if never set."""
        ...

    def set_cursor(self, name: str, at: datetime) -> None:
        """Persist a position; call inside ``atomic()`` with what it covers."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, site_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS devices_site ON devices (site_id);
CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS engineers (
    id TEXT PRIMARY KEY, region TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY, device_id TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tickets_device ON tickets (device_id);
CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
-- The audit log is append-only in the database too, not just by convention.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS deliveries (
    n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
-- The transactional outbox: written with the ticket change, emptied by the worker's sender.
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, event_id TEXT NOT NULL, status TEXT NOT NULL,
    next_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, next_at);
CREATE INDEX IF NOT EXISTS outbox_event ON outbox (event_id);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, at TEXT NOT NULL);
"""


class SqliteStore:
    """ServiceStore on one SQLite database; safe to share between threads."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        # Autocommit mode: transactions are opened explicitly by atomic().
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction around everything inside; nested calls join the outer one."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.atomic():
            self._db.execute(sql, params)

    def _one(self, model: type[M], table: str, key: str) -> M | None:
        with self._lock:
            row = self._db.execute(f"SELECT doc FROM {table} WHERE id = ?", (key,)).fetchone()
        return None if row is None else model.model_validate_json(row[0])

    def _many(self, model: type[M], sql: str, params: tuple[Any, ...] = ()) -> list[M]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [model.model_validate_json(r[0]) for r in rows]

    def put_site(self, site: Site) -> None:
        """Insert or replace a site."""
        self._write("INSERT OR REPLACE INTO sites VALUES (?, ?)", (site.id, site.model_dump_json()))

    def site(self, site_id: str) -> Site | None:
        """One site, or None."""
        return self._one(Site, "sites", site_id)

    def sites(self) -> list[Site]:
        """All sites by id."""
        return self._many(Site, "SELECT doc FROM sites ORDER BY id")

    def put_device(self, device: Device) -> None:
        """Insert or replace a device."""
        self._write(
            "INSERT OR REPLACE INTO devices VALUES (?, ?, ?)",
            (device.id, device.site_id, device.model_dump_json()),
        )

    def device(self, device_id: str) -> Device | None:
        """One device, or None."""
        return self._one(Device, "devices", device_id)

    def devices(self, site_id: str | None = None) -> list[Device]:
        """Devices by id, optionally of one site."""
        if site_id is None:
            return self._many(Device, "SELECT doc FROM devices ORDER BY id")
        return self._many(
            Device, "SELECT doc FROM devices WHERE site_id = ? ORDER BY id", (site_id,)
        )

    def put_patient(self, patient: Patient) -> None:
        """Insert or replace a patient."""
        self._write(
            "INSERT OR REPLACE INTO patients VALUES (?, ?)", (patient.id, patient.model_dump_json())
        )

    def patient(self, patient_id: str) -> Patient | None:
        """One patient, or None."""
        return self._one(Patient, "patients", patient_id)

    def put_engineer(self, engineer: Engineer) -> None:
        """Insert or replace an engineer."""
        self._write(
            "INSERT OR REPLACE INTO engineers VALUES (?, ?, ?)",
            (engineer.id, engineer.region, engineer.model_dump_json()),
        )

    def engineer(self, engineer_id: str) -> Engineer | None:
        """One engineer, or None."""
        return self._one(Engineer, "engineers", engineer_id)

    def engineers(self, region: str | None = None) -> list[Engineer]:
        """Engineers by id, optionally of one region."""
        if region is None:
            return self._many(Engineer, "SELECT doc FROM engineers ORDER BY id")
        return self._many(
            Engineer, "SELECT doc FROM engineers WHERE region = ? ORDER BY id", (region,)
        )

    def put_ticket(self, ticket: Ticket) -> None:
        """Insert or replace a ticket."""
        self._write(
            "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?)",
            (ticket.id, ticket.device_id, str(ticket.state), ticket.model_dump_json()),
        )

    def ticket(self, ticket_id: str) -> Ticket | None:
        """One ticket, or None."""
        return self._one(Ticket, "tickets", ticket_id)

    def tickets(
        self,
        states: Iterable[TicketState] | None = None,
        device_ids: Iterable[str] | None = None,
    ) -> list[Ticket]:
        """Tickets by id, optionally filtered by state and device."""
        clauses: list[str] = []
        params: list[str] = []
        for column, values in (("state", states), ("device_id", device_ids)):
            if values is not None:
                chosen = [str(v) for v in values]
                clauses.append(f"{column} IN ({', '.join('?' * len(chosen))})")
                params.extend(chosen)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._many(Ticket, f"SELECT doc FROM tickets{where} ORDER BY id", tuple(params))

    def append_audit(
        self, at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any]
    ) -> AuditEntry:
        """Chain and store one audit entry atomically; return it."""
        with self.atomic():
            row = self._db.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            entry = audit.append(
                None if row is None else audit.from_row(row), at, actor, action, subject, data
            )
            self._db.execute(
                "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                audit.to_row(entry),
            )
        return entry

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        return [audit.from_row(r) for r in rows]

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep one notification delivery attempt."""
        self._write(
            "INSERT INTO deliveries (event_id, doc) VALUES (?, ?)",
            (delivery.event_id, delivery.model_dump_json()),
        )

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Delivery attempts in the order recorded, optionally of one event."""
        if event_id is None:
            return self._many(Delivery, "SELECT doc FROM deliveries ORDER BY n")
        return self._many(
            Delivery, "SELECT doc FROM deliveries WHERE event_id = ? ORDER BY n", (event_id,)
        )

    def enqueue_notifications(self, items: Iterable[OutboxItem]) -> None:
        """Add pending notifications to the outbox; a key already there is left as it is."""
        with self.atomic():
            for item in items:
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)", _outbox_row(item)
                )

    def update_notification(self, item: OutboxItem) -> None:
        """Replace an outbox item (attempts, status, next try) by its key."""
        self._write("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)", _outbox_row(item))

    def pending_notifications(self, limit: int = 100) -> list[OutboxItem]:
        """Pending outbox items, earliest next try first."""
        return self._many(
            OutboxItem,
            "SELECT doc FROM outbox WHERE status = ? ORDER BY next_at, key LIMIT ?",
            (str(OutboxStatus.PENDING), limit),
        )

    def notifications(self, event_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item (any status) by key, optionally of one event."""
        if event_id is None:
            return self._many(OutboxItem, "SELECT doc FROM outbox ORDER BY key")
        return self._many(
            OutboxItem, "SELECT doc FROM outbox WHERE event_id = ? ORDER BY key", (event_id,)
        )

    def cursor(self, name: str) -> datetime | None:
        """A persisted position (e.g. the last breach-scan instant), or None if never set."""
        with self._lock:
            row = self._db.execute("SELECT at FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def set_cursor(self, name: str, at: datetime) -> None:
        """Persist a position; call inside ``atomic()`` with what it covers."""
        self._write("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (name, _utc_text(at)))


def _outbox_row(item: OutboxItem) -> tuple[str, str, str, float, str]:
    return (
        item.key,
        item.event_id,
        str(item.status),
        item.next_at.timestamp(),
        item.model_dump_json(),
    )


def _utc_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("cursor instants must be aware")
    return at.astimezone(UTC).isoformat()


def open_service_store(url: str) -> ServiceStore:
    """Open the store ``url`` names (``sqlite:///path`` or ``postgresql://…`` / a libpq DSN)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError(f"no database path in {url!r}")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")) or ("=" in url and "://" not in url):
        # Imported here so a SQLite-only deployment never loads libpq.
        from service.store_postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported service store URL {url!r}: use sqlite:///… or postgresql://…")
