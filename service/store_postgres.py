"""ServiceStore on PostgreSQL (psycopg 3): the same shape as SqliteStore, documents in jsonb.

One connection per store, guarded by a lock, so the store can be shared by the API's worker
threads and ``asyncio.to_thread``; separate processes (API, worker) each open their own and the
audit chain stays single because ``append_audit`` takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
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
from service.store import _outbox_row, _utc_text

M = TypeVar("M", bound=BaseModel)

# Serialises audit appends across connections and processes: one chain, no forks.
_AUDIT_LOCK_KEY = 0x76_69_67_61_75_64  # "vigaud"
_MIGRATE_LOCK_KEY = 0x76_69_67_73_76_63  # "vigsvc"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS service_sites (id text PRIMARY KEY, doc jsonb NOT NULL)",
    """CREATE TABLE IF NOT EXISTS service_devices (
        id text PRIMARY KEY, site_id text NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_devices_site ON service_devices (site_id)",
    "CREATE TABLE IF NOT EXISTS service_patients (id text PRIMARY KEY, doc jsonb NOT NULL)",
    """CREATE TABLE IF NOT EXISTS service_engineers (
        id text PRIMARY KEY, region text NOT NULL, doc jsonb NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS service_tickets (
        id text PRIMARY KEY, device_id text NOT NULL, state text NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_tickets_device ON service_tickets (device_id)",
    "CREATE INDEX IF NOT EXISTS service_tickets_state ON service_tickets (state)",
    # ``at`` and ``data`` are kept as the exact text that was hashed: a timestamptz would come
    # back in the session's time zone and jsonb would reorder keys, and either breaks the hash.
    """CREATE TABLE IF NOT EXISTS service_audit_log (
        seq bigint PRIMARY KEY, at text NOT NULL, actor text NOT NULL, action text NOT NULL,
        subject text NOT NULL, data text NOT NULL, prev_hash text NOT NULL,
        hash text NOT NULL)""",
    # The audit log is append-only in the database too, not just by convention.
    """CREATE OR REPLACE FUNCTION service_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER service_audit_no_change
        BEFORE UPDATE OR DELETE ON service_audit_log
        FOR EACH ROW EXECUTE FUNCTION service_audit_append_only()""",
    """CREATE OR REPLACE TRIGGER service_audit_no_truncate
        BEFORE TRUNCATE ON service_audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION service_audit_append_only()""",
    """CREATE TABLE IF NOT EXISTS service_deliveries (
        n bigserial PRIMARY KEY, event_id text NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_deliveries_event ON service_deliveries (event_id)",
    # The transactional outbox: written with the ticket change, emptied by the worker's sender.
    """CREATE TABLE IF NOT EXISTS service_outbox (
        key text PRIMARY KEY, event_id text NOT NULL, status text NOT NULL,
        next_at double precision NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_outbox_pending ON service_outbox (status, next_at)",
    "CREATE INDEX IF NOT EXISTS service_outbox_event ON service_outbox (event_id)",
    """CREATE TABLE IF NOT EXISTS service_cursors (
        name text PRIMARY KEY, at text NOT NULL)""",
)

_NO_FILTER = sql.SQL("")
_TABLES = {
    Site: "service_sites",
    Device: "service_devices",
    Patient: "service_patients",
    Engineer: "service_engineers",
    Ticket: "service_tickets",
}


class PostgresStore:
    """ServiceStore on one PostgreSQL database; safe to share between threads."""

    def __init__(self, conninfo: str, *, migrate: bool = True) -> None:
        # Autocommit: transactions are exactly the ones atomic() opens.
        self._conn: psycopg.Connection[TupleRow] = psycopg.connect(conninfo, autocommit=True)
        self._lock = threading.RLock()
        self._depth = 0
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Create the schema if it is missing; safe to call any number of times."""
        with self.atomic():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around everything inside; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._conn.transaction():
                    yield
            finally:
                self._depth = 0

    def _write(self, query: LiteralString, params: tuple[Any, ...]) -> None:
        with self.atomic():
            self._conn.execute(query, params)

    def _upsert(self, obj: BaseModel, key: str, columns: Mapping[str, str]) -> None:
        table = _TABLES[type(obj)]
        names = ["id", *columns, "doc"]
        query = sql.SQL(
            "INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {sets}"
        ).format(
            table=sql.Identifier(table),
            cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in names[1:]
            ),
        )
        doc = obj.model_dump_json()
        with self.atomic():
            self._conn.execute(query, (key, *columns.values(), doc))

    def _one(self, model: type[M], key: str) -> M | None:
        query = sql.SQL("SELECT doc::text FROM {} WHERE id = %s").format(
            sql.Identifier(_TABLES[model])
        )
        with self._lock:
            row = self._conn.execute(query, (key,)).fetchone()
        return None if row is None else model.model_validate_json(row[0])

    def _many(
        self, model: type[M], where: sql.Composable = _NO_FILTER, params: tuple[Any, ...] = ()
    ) -> list[M]:
        query = sql.SQL("SELECT doc::text FROM {} {} ORDER BY id").format(
            sql.Identifier(_TABLES[model]), where
        )
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        return [model.model_validate_json(r[0]) for r in rows]

    def put_site(self, site: Site) -> None:
        """Insert or replace a site."""
        self._upsert(site, site.id, {})

    def site(self, site_id: str) -> Site | None:
        """One site, or None."""
        return self._one(Site, site_id)

    def sites(self) -> list[Site]:
        """All sites by id."""
        return self._many(Site)

    def put_device(self, device: Device) -> None:
        """Insert or replace a device."""
        self._upsert(device, device.id, {"site_id": device.site_id})

    def device(self, device_id: str) -> Device | None:
        """One device, or None."""
        return self._one(Device, device_id)

    def devices(self, site_id: str | None = None) -> list[Device]:
        """Devices by id, optionally of one site."""
        if site_id is None:
            return self._many(Device)
        return self._many(Device, sql.SQL("WHERE site_id = %s"), (site_id,))

    def put_patient(self, patient: Patient) -> None:
        """Insert or replace a patient."""
        self._upsert(patient, patient.id, {})

    def patient(self, patient_id: str) -> Patient | None:
        """One patient, or None."""
        return self._one(Patient, patient_id)

    def put_engineer(self, engineer: Engineer) -> None:
        """Insert or replace an engineer."""
        self._upsert(engineer, engineer.id, {"region": engineer.region})

    def engineer(self, engineer_id: str) -> Engineer | None:
        """One engineer, or None."""
        return self._one(Engineer, engineer_id)

    def engineers(self, region: str | None = None) -> list[Engineer]:
        """Engineers by id, optionally of one region."""
        if region is None:
            return self._many(Engineer)
        return self._many(Engineer, sql.SQL("WHERE region = %s"), (region,))

    def put_ticket(self, ticket: Ticket) -> None:
        """Insert or replace a ticket."""
        self._upsert(ticket, ticket.id, {"device_id": ticket.device_id, "state": str(ticket.state)})

    def ticket(self, ticket_id: str) -> Ticket | None:
        """One ticket, or None."""
        return self._one(Ticket, ticket_id)

    def tickets(
        self,
        states: Iterable[TicketState] | None = None,
        device_ids: Iterable[str] | None = None,
    ) -> list[Ticket]:
        """Tickets by id, optionally filtered by state and device."""
        clauses: list[sql.Composable] = []
        params: list[list[str]] = []
        for column, values in (("state", states), ("device_id", device_ids)):
            if values is not None:
                clauses.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
                params.append([str(v) for v in values])
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        return self._many(Ticket, where, tuple(params))

    def append_audit(
        self, at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any]
    ) -> AuditEntry:
        """Chain and store one audit entry atomically; return it."""
        with self.atomic():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))
            row = self._conn.execute(
                "SELECT * FROM service_audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            entry = audit.append(
                None if row is None else audit.from_row(row), at, actor, action, subject, data
            )
            self._conn.execute(
                "INSERT INTO service_audit_log VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                audit.to_row(entry),
            )
        return entry

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM service_audit_log ORDER BY seq").fetchall()
        return [audit.from_row(r) for r in rows]

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep one notification delivery attempt."""
        self._write(
            "INSERT INTO service_deliveries (event_id, doc) VALUES (%s, %s)",
            (delivery.event_id, delivery.model_dump_json()),
        )

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Delivery attempts in the order recorded, optionally of one event."""
        with self._lock:
            if event_id is None:
                rows = self._conn.execute(
                    "SELECT doc::text FROM service_deliveries ORDER BY n"
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT doc::text FROM service_deliveries WHERE event_id = %s ORDER BY n",
                    (event_id,),
                ).fetchall()
        return [Delivery.model_validate_json(r[0]) for r in rows]

    def enqueue_notifications(self, items: Iterable[OutboxItem]) -> None:
        """Add pending notifications to the outbox; a key already there is left as it is."""
        with self.atomic():
            for item in items:
                self._conn.execute(
                    "INSERT INTO service_outbox VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (key) DO NOTHING",
                    _outbox_row(item),
                )

    def update_notification(self, item: OutboxItem) -> None:
        """Replace an outbox item (attempts, status, next try) by its key."""
        self._write(
            "INSERT INTO service_outbox VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE"
            " SET status = EXCLUDED.status, next_at = EXCLUDED.next_at, doc = EXCLUDED.doc",
            _outbox_row(item),
        )

    def pending_notifications(self, limit: int = 100) -> list[OutboxItem]:
        """Pending outbox items, earliest next try first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc::text FROM service_outbox WHERE status = %s"
                " ORDER BY next_at, key LIMIT %s",
                (str(OutboxStatus.PENDING), limit),
            ).fetchall()
        return [OutboxItem.model_validate_json(r[0]) for r in rows]

    def notifications(self, event_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item (any status) by key, optionally of one event."""
        with self._lock:
            if event_id is None:
                rows = self._conn.execute(
                    "SELECT doc::text FROM service_outbox ORDER BY key"
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT doc::text FROM service_outbox WHERE event_id = %s ORDER BY key",
                    (event_id,),
                ).fetchall()
        return [OutboxItem.model_validate_json(r[0]) for r in rows]

    def cursor(self, name: str) -> datetime | None:
        """A persisted position (e.g. the last breach-scan instant), or None if never set."""
        with self._lock:
            row = self._conn.execute(
                "SELECT at FROM service_cursors WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def set_cursor(self, name: str, at: datetime) -> None:
        """Persist a position; call inside ``atomic()`` with what it covers."""
        self._write(
            "INSERT INTO service_cursors VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET at = EXCLUDED.at",
            (name, _utc_text(at)),
        )
