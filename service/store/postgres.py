"""ServiceStore on PostgreSQL (psycopg 3): the same shape as SqliteStore, documents in jsonb.

One ``infra.pg_pool.PgPool`` per store (psycopg_pool: timeouts, keepalives, dead connections
replaced), so the API's worker threads and ``asyncio.to_thread`` each work on a connection of
their own. A server lost mid-transaction is ``StorageUnavailable``: the caller repeats the whole
transaction.
Separate processes (API, worker) each open their own store; the audit chain stays single because
``append_audit`` takes a transaction-scoped advisory lock, and a ticket write that lost a race
(stale version, deadlock, serialization failure) is ``ConcurrentUpdate``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.abc import QueryNoTemplate as Query
from psycopg.rows import TupleRow
from pydantic import BaseModel

from infra.pg_pool import DEFAULT_MAX_SIZE, PgPool
from infra.postgres import Work
from infra.retention import Pruned
from infra.time_us import us_from_datetime
from service import audit
from service.audit import AuditEntry, AuditSigner
from service.concurrency import ConcurrentUpdate
from service.model import (
    DeadLetter,
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
from service.sla import SlaConfig
from service.store import knowledge_search
from service.store.columns import Placement, placement_of
from service.store.postgres_schema import (
    AFTER_UPGRADES,
    MIGRATE_LOCK_KEY,
    REMOTE_SCHEMA,
    SCHEMA,
    UPGRADES,
)
from service.store.rows import outbox_row, ticket_at, utc_text
from service.store.sql_store import Dialect, RemoteQueries, SqlQueries
from service.traceability.model import Recall, UdiRecord

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Serialises audit appends across connections and processes: one chain, no forks.
_AUDIT_LOCK_KEY = 0x76_69_67_61_75_64  # "vigaud"
# The first key of the per-device advisory locks (the second is the device id's hash).
_DEVICE_LOCK_CLASS = 0x7664  # "vd"

_NO_FILTER = sql.SQL("")
_FINISHED = [str(OutboxStatus.DONE), str(OutboxStatus.FAILED)]
# kind → (table, condition on the cutoff) of what retention prunes; each condition is indexed.
_PRUNES: dict[str, tuple[str, LiteralString]] = {
    "notifications": ("service_outbox", "status = ANY(%s) AND next_at < %s"),
    "deliveries": ("service_deliveries", "at_s < %s"),
    "dead_letters": ("service_dead_letters", "received_at < %s"),
}
_TABLES = {
    Site: "service_sites",
    Device: "service_devices",
    Patient: "service_patients",
    Engineer: "service_engineers",
}


DIALECT = Dialect(
    tickets="service_tickets",
    devices="service_devices",
    audit="service_audit_log",
    signatures="service_audit_signatures",
    credits="service_credits",
    knowledge="service_knowledge",
    stock="service_stock",
    reservations="service_reservations",
    harm="service_harm_flags",
    quiet_hours="service_quiet_hours",
    doc="doc::text",
    doc_text="doc->>'{}'",
    greatest="GREATEST",
    differs="IS DISTINCT FROM",
    knowledge_match=knowledge_search.POSTGRES_MATCH,
    knowledge_terms=knowledge_search.tsquery_terms,
)


class PostgresStore(SqlQueries, RemoteQueries):
    """ServiceStore on one PostgreSQL database; safe to share between threads.

    Each thread's transaction (``atomic``) and each read outside one take a connection of the
    store's pool, so concurrent requests and the worker's jobs run side by side.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        migrate: bool = True,
        sla: SlaConfig | None = None,
        pool_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._db = PgPool(conninfo, name="PostgreSQL (service store)", max_size=pool_size)
        # The connection of the transaction atomic() has open in this thread, if any.
        self._local = threading.local()
        self.dialect = DIALECT
        self.sla = sla or SlaConfig()
        self.audit_signer: AuditSigner | None = None
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Create the schema if it is missing, or upgrade it; safe to call any number of times."""
        with self.atomic():
            conn = self._current()
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            for statement in SCHEMA:
                conn.execute(statement)
            for table, column, alter in UPGRADES:
                found = conn.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema ="
                    " current_schema() AND table_name = %s AND column_name = %s",
                    (table, column),
                ).fetchone()
                if found is None:
                    conn.execute(alter)
            for statement in AFTER_UPGRADES:
                conn.execute(statement)
            for statement in REMOTE_SCHEMA:
                conn.execute(statement)
        self.backfill()

    def close(self) -> None:
        """Close the pool's connections."""
        self._db.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around everything inside; nested calls join the outer one."""
        if self._open() is not None:
            yield
            return
        try:
            with self._db.transaction() as conn:
                self._local.tx = conn
                try:
                    yield
                finally:
                    # What this transaction knew holds only while it holds its locks.
                    self._local.tx = self._local.audit_head = None
                    self._local.devices = {}
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # The server chose this transaction to lose a race: nothing of it was kept.
            raise ConcurrentUpdate(f"transaction aborted by a concurrent one: {exc}") from exc

    def _open(self) -> psycopg.Connection[TupleRow] | None:
        """This thread's open transaction's connection, if any."""
        tx: psycopg.Connection[TupleRow] | None = getattr(self._local, "tx", None)
        return tx

    def _current(self) -> psycopg.Connection[TupleRow]:
        """The open transaction's connection; call inside ``atomic()``."""
        tx = self._open()
        if tx is None:
            raise RuntimeError("no transaction open")
        return tx

    def _run(self, work: Work[T]) -> T:
        """``work`` in this thread's open transaction, or alone on a pooled connection."""
        tx = self._open()
        return work(tx) if tx is not None else self._db.run(work)

    def _write(self, query: Query, params: tuple[Any, ...] = ()) -> int:
        """One statement in a transaction (the open one, or its own); the rows it touched."""
        with self.atomic():
            return self._current().execute(query, params).rowcount

    def _rows(self, query: Query | str, params: Sequence[Any] = ()) -> list[TupleRow]:
        """Rows of a read; ``?`` placeholders of the shared queries become ``%s``."""
        if isinstance(query, str):
            query = query.replace("?", "%s")
        final = query
        return self._run(lambda conn: conn.execute(final, tuple(params)).fetchall())

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write of the shared queries inside ``atomic()``; the rows it touched."""
        return self._current().execute(query.replace("?", "%s"), tuple(params)).rowcount

    def lock_device(self, device_id: str) -> None:
        """Serialise changes of one device's tickets until the transaction ends (any process)."""
        self._current().execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_DEVICE_LOCK_CLASS, device_id)
        )

    def _upsert(self, obj: BaseModel, key: str, columns: Mapping[str, str]) -> None:
        names = ["id", *columns, "doc"]
        query = sql.SQL(
            "INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {sets}"
        ).format(
            table=sql.Identifier(_TABLES[type(obj)]),
            cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in names[1:]
            ),
        )
        self._write(query, (key, *columns.values(), obj.model_dump_json()))

    def _one(self, model: type[M], key: str) -> M | None:
        query = sql.SQL("SELECT doc::text FROM {} WHERE id = %s").format(
            sql.Identifier(_TABLES[model])
        )
        rows = self._rows(query, (key,))
        return model.model_validate_json(rows[0][0]) if rows else None

    def _many(
        self, model: type[M], where: sql.Composable = _NO_FILTER, params: tuple[Any, ...] = ()
    ) -> list[M]:
        query = sql.SQL("SELECT doc::text FROM {} {} ORDER BY id").format(
            sql.Identifier(_TABLES[model]), where
        )
        return [model.model_validate_json(r[0]) for r in self._rows(query, params)]

    def put_site(self, site: Site) -> None:
        """Insert or replace a site."""
        self._upsert(site, site.id, {})

    def site(self, site_id: str) -> Site | None:
        """One site, or None."""
        return self._one(Site, site_id)

    def sites(self) -> list[Site]:
        """All sites by id."""
        return self._many(Site)

    def device(self, device_id: str) -> Device | None:
        """One device, or None; read once per transaction (intake reads it several times)."""
        if self._open() is None:
            return self._one(Device, device_id)
        known: dict[str, Device | None] = getattr(self._local, "devices", {})
        if device_id not in known:
            known[device_id] = self._one(Device, device_id)
            self._local.devices = known
        return known[device_id]

    def _placement(self, device_id: str) -> Placement:
        """Where the device stands: from the transaction's read of it, if one is open."""
        if self._open() is None:
            return super()._placement(device_id)
        return placement_of(self.device(device_id))

    def put_device(self, device: Device) -> None:
        """Insert or replace a device; its tickets follow it to its site and patient."""
        with self.atomic():
            super().put_device(device)
            self._local.devices = {}  # read afresh by the rest of this transaction

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

    def ticket(self, ticket_id: str) -> Ticket | None:
        """One ticket, or None."""
        rows = self._rows(
            "SELECT doc::text, version FROM service_tickets WHERE id = %s", (ticket_id,)
        )
        return ticket_at(rows[0][0], rows[0][1]) if rows else None

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
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else _NO_FILTER
        query = sql.SQL("SELECT doc::text, version FROM service_tickets {} ORDER BY id").format(
            where
        )
        return [ticket_at(doc, version) for doc, version in self._rows(query, tuple(params))]

    def append_audit(
        self, at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any]
    ) -> AuditEntry:
        """Chain and store one audit entry atomically; return it."""
        with self.atomic():
            conn = self._current()
            entry = audit.append(self._audit_head(conn), at, actor, action, subject, data)
            conn.execute(
                "INSERT INTO service_audit_log VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                audit.to_row(entry),
            )
            if self.audit_signer is not None:
                conn.execute(
                    "INSERT INTO service_audit_signatures VALUES (%s, %s)",
                    (entry.seq, self.audit_signer(entry)),
                )
            self._local.audit_head = entry
        return entry

    def _audit_head(self, conn: psycopg.Connection[TupleRow]) -> AuditEntry | None:
        """The chain's last entry, under the audit lock this transaction holds till it ends.

        The transaction's first append takes the lock and reads the head; later ones in the same
        transaction chain on the entry it appended last (nobody else can append meanwhile), so a
        ticket opened and dispatched, or a group of alerts, pays the lock and the read once.
        """
        head: AuditEntry | None = getattr(self._local, "audit_head", None)
        if head is not None:
            return head
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))
        row = conn.execute("SELECT * FROM service_audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else audit.from_row(row)

    def audit_rows(self) -> list[tuple[Any, ...]]:
        """Every audit row as stored, in sequence order."""
        return [tuple(r) for r in self._rows("SELECT * FROM service_audit_log ORDER BY seq")]

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        rows = self._rows("SELECT * FROM service_audit_log ORDER BY seq")
        return [audit.from_row(r) for r in rows]

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep one notification delivery attempt."""
        self._write(
            "INSERT INTO service_deliveries (event_id, doc, at_s) VALUES (%s, %s, %s)",
            (delivery.event_id, delivery.model_dump_json(), delivery.at.timestamp()),
        )

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Delivery attempts in the order recorded, optionally of one event."""
        if event_id is None:
            rows = self._rows("SELECT doc::text FROM service_deliveries ORDER BY n")
        else:
            rows = self._rows(
                "SELECT doc::text FROM service_deliveries WHERE event_id = %s ORDER BY n",
                (event_id,),
            )
        return [Delivery.model_validate_json(r[0]) for r in rows]

    def enqueue_notifications(self, items: Iterable[OutboxItem]) -> None:
        """Add pending notifications to the outbox; a key already there is left as it is."""
        rows = [outbox_row(item) for item in items]
        if not rows:
            return
        with self.atomic(), self._current().cursor() as cursor:
            # One round trip for all of them (psycopg pipelines executemany).
            cursor.executemany(
                "INSERT INTO service_outbox VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (key) DO NOTHING",
                rows,
            )

    def update_notification(self, item: OutboxItem) -> None:
        """Replace an outbox item (attempts, status, next try) by its key."""
        self._write(
            "INSERT INTO service_outbox VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE"
            " SET status = EXCLUDED.status, next_at = EXCLUDED.next_at, doc = EXCLUDED.doc",
            outbox_row(item),
        )

    def pending_notifications(self, limit: int = 100) -> list[OutboxItem]:
        """Pending outbox items, earliest next try first."""
        rows = self._rows(
            "SELECT doc::text FROM service_outbox WHERE status = %s ORDER BY next_at, key LIMIT %s",
            (str(OutboxStatus.PENDING), limit),
        )
        return [OutboxItem.model_validate_json(r[0]) for r in rows]

    def notifications(self, event_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item (any status) by key, optionally of one event."""
        if event_id is None:
            rows = self._rows("SELECT doc::text FROM service_outbox ORDER BY key")
        else:
            rows = self._rows(
                "SELECT doc::text FROM service_outbox WHERE event_id = %s ORDER BY key",
                (event_id,),
            )
        return [OutboxItem.model_validate_json(r[0]) for r in rows]

    def cursor(self, name: str) -> datetime | None:
        """A persisted position (e.g. the last breach-scan instant), or None if never set."""
        rows = self._rows("SELECT at FROM service_cursors WHERE name = %s", (name,))
        return datetime.fromisoformat(rows[0][0]) if rows else None

    def set_cursor(self, name: str, at: datetime) -> None:
        """Persist a position; call inside ``atomic()`` with what it covers."""
        self._write(
            "INSERT INTO service_cursors VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET at = EXCLUDED.at",
            (name, utc_text(at)),
        )

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep a message the worker could not use, with the reason."""
        self._write(
            "INSERT INTO service_dead_letters (received_at, topic, reason, payload)"
            " VALUES (%s, %s, %s, %s)",
            (letter.received_at, letter.topic, letter.reason, letter.payload),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters, newest first."""
        rows = self._rows(
            "SELECT received_at, topic, reason, payload FROM service_dead_letters"
            " ORDER BY n DESC LIMIT %s",
            (limit,),
        )
        return [
            DeadLetter(received_at=at, topic=topic, reason=reason, payload=bytes(payload))
            for at, topic, reason, payload in rows
        ]

    def prune_notifications(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove outbox items delivered or given up whose last try was due before the cutoff."""
        return self._prune(
            "notifications", (_FINISHED, older_than.timestamp()), older_than, dry_run
        )

    def prune_deliveries(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove delivery attempts made before ``older_than``."""
        return self._prune("deliveries", (older_than.timestamp(),), older_than, dry_run)

    def prune_dead_letters(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than``."""
        return self._prune("dead_letters", (older_than,), older_than, dry_run)

    def _prune(
        self, kind: str, params: tuple[Any, ...], older_than: datetime, dry_run: bool
    ) -> Pruned:
        """Count, or delete in one statement, the rows of ``kind`` past the cutoff."""
        table, where = _PRUNES[kind]
        rows = sql.SQL("FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(where)
        cutoff_us = us_from_datetime(older_than)
        if dry_run:
            [(count,)] = self._rows(sql.SQL("SELECT count(*) ") + rows, params)
            return Pruned(kind, int(count), cutoff_us)
        return Pruned(kind, self._write(sql.SQL("DELETE ") + rows, params), cutoff_us)

    def put_udi(self, record: UdiRecord) -> None:
        """Insert or replace the UDI a device was registered with."""
        self._write(
            "INSERT INTO service_device_udi (device_id, lot, doc) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET lot = EXCLUDED.lot, doc = EXCLUDED.doc",
            (record.device_id, record.lot, record.model_dump_json()),
        )

    def udi(self, device_id: str) -> UdiRecord | None:
        """The UDI of one device, or None."""
        rows = self._rows(
            "SELECT doc::text FROM service_device_udi WHERE device_id = %s", (device_id,)
        )
        return UdiRecord.model_validate_json(rows[0][0]) if rows else None

    def udis(self, lot: str | None = None) -> list[UdiRecord]:
        """UDI records by device id, optionally of one lot."""
        if lot is None:
            rows = self._rows("SELECT doc::text FROM service_device_udi ORDER BY device_id")
        else:
            rows = self._rows(
                "SELECT doc::text FROM service_device_udi WHERE lot = %s ORDER BY device_id",
                (lot,),
            )
        return [UdiRecord.model_validate_json(r[0]) for r in rows]

    def put_recall(self, recall: Recall) -> None:
        """Insert or replace a recalled lot."""
        self._write(
            "INSERT INTO service_recalls (key, lot, doc) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET lot = EXCLUDED.lot, doc = EXCLUDED.doc",
            (recall.key, recall.lot, recall.model_dump_json()),
        )

    def recalls(self) -> list[Recall]:
        """Every recalled lot, by lot."""
        rows = self._rows("SELECT doc::text FROM service_recalls ORDER BY key")
        return [Recall.model_validate_json(r[0]) for r in rows]
