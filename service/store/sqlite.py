"""ServiceStore on SQLite (stdlib sqlite3): one file, or memory, for a single site or a demo.

Domain objects are stored as JSON documents next to the columns queries filter on, so the
PostgreSQL implementation (jsonb) has the same SQL shape. A write lock not obtained within the
busy timeout ("database is locked") is ``StorageUnavailable``: another process holds the
database, and the same transaction may succeed a moment later.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from infra.errors import StorageUnavailable
from infra.retention import CHUNK_ROWS, Pruned, delete_in_chunks
from infra.time_us import us_from_datetime
from service import audit
from service.audit import AuditEntry, AuditSigner
from service.knowledge import KnowledgeEntry
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
from service.store.columns import (
    DEVICE_COLUMNS,
    HELD_CONDITION,
    OPEN_CONDITION,
    TICKET_COLUMNS,
)
from service.store.rows import outbox_row, ticket_at, utc_text
from service.store.sql_store import REMOTE_TABLES_SQLITE, Dialect, RemoteQueries, SqlQueries
from service.traceability.model import Recall, UdiRecord

M = TypeVar("M", bound=BaseModel)

_TABLES = """
CREATE TABLE IF NOT EXISTS sites (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, site_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS engineers (
    id TEXT PRIMARY KEY, region TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY, device_id TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
-- The audit log is append-only in the database too, not just by convention.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_signatures (seq INTEGER PRIMARY KEY, signature TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_signatures_no_update BEFORE UPDATE ON audit_signatures
    BEGIN SELECT RAISE(ABORT, 'audit signatures are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_signatures_no_delete BEFORE DELETE ON audit_signatures
    BEGIN SELECT RAISE(ABORT, 'audit signatures are append-only'); END;
-- at_s: the attempt's time (epoch s), which retention prunes by (indexed in _migrate).
CREATE TABLE IF NOT EXISTS deliveries (
    n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, doc TEXT NOT NULL, at_s REAL);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
-- The transactional outbox: written with the ticket change, emptied by the worker's sender.
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, event_id TEXT NOT NULL, status TEXT NOT NULL,
    next_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, next_at);
CREATE INDEX IF NOT EXISTS outbox_event ON outbox (event_id);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, at TEXT NOT NULL);
-- Prefixed: the telemetry store, which may share the file, has its own dead_letters.
CREATE TABLE IF NOT EXISTS service_dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, topic TEXT NOT NULL,
    reason TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS service_dead_letters_received ON service_dead_letters (received_at);
-- Traceability: the UDI each device was registered with, and the recalled lots.
CREATE TABLE IF NOT EXISTS device_udi (
    device_id TEXT PRIMARY KEY, lot TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS device_udi_lot ON device_udi (lot);
CREATE TABLE IF NOT EXISTS recalls (key TEXT PRIMARY KEY, lot TEXT NOT NULL, doc TEXT NOT NULL);
-- Service credits: what SLA breaches owe customers, one per (ticket, clock, breach instant).
CREATE TABLE IF NOT EXISTS service_credits (
    key TEXT PRIMARY KEY, ticket_id TEXT NOT NULL, site_id TEXT NOT NULL, patient TEXT,
    at_us INTEGER NOT NULL, amount_minor INTEGER NOT NULL, currency TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS service_credits_site ON service_credits (site_id, at_us, key);
CREATE INDEX IF NOT EXISTS service_credits_at ON service_credits (at_us, key);
CREATE INDEX IF NOT EXISTS service_credits_ticket ON service_credits (ticket_id);
-- The knowledge base: causes and fixes per (device model, fault code); text is lower-cased.
CREATE TABLE IF NOT EXISTS service_knowledge (
    model TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (model, code));
CREATE INDEX IF NOT EXISTS service_knowledge_code ON service_knowledge (code, model);
-- Spare parts per warehouse; low/alerted drive the worker's once-per-fall low-stock alert.
CREATE TABLE IF NOT EXISTS service_stock (
    warehouse TEXT NOT NULL, part TEXT NOT NULL, on_hand INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0, low_at INTEGER NOT NULL DEFAULT 0,
    low INTEGER NOT NULL DEFAULT 0, alerted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (warehouse, part));
CREATE INDEX IF NOT EXISTS service_stock_low ON service_stock (low, alerted);
-- Tickets flagged "patient harm suspected": the start of a vigilance (incident) report.
CREATE TABLE IF NOT EXISTS service_harm_flags (
    ticket_id TEXT PRIMARY KEY, flagged_us INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS service_harm_flags_at ON service_harm_flags (flagged_us, ticket_id);
CREATE TABLE IF NOT EXISTS service_reservations (
    ticket_id TEXT NOT NULL, warehouse TEXT NOT NULL, part TEXT NOT NULL,
    quantity INTEGER NOT NULL, PRIMARY KEY (ticket_id, warehouse, part));
-- Quiet hours patients chose on their page ("patient/<id>"; doc: {"quiet_hours": ... | null}).
CREATE TABLE IF NOT EXISTS service_quiet_hours (
    recipient TEXT PRIMARY KEY, updated_us INTEGER NOT NULL, doc TEXT NOT NULL);
"""
# Made after the upgrades, since older tables gain the columns they cover only then.
_INDEXES = """
CREATE INDEX IF NOT EXISTS engineers_region ON engineers (region, id);
CREATE INDEX IF NOT EXISTS devices_site ON devices (site_id);
CREATE INDEX IF NOT EXISTS devices_site_id ON devices (site_id, id);
CREATE INDEX IF NOT EXISTS devices_site_ward ON devices (site_id, ward, id);
CREATE INDEX IF NOT EXISTS devices_patient ON devices (patient, id);
CREATE INDEX IF NOT EXISTS devices_pm ON devices (kind, last_pm_day);
CREATE INDEX IF NOT EXISTS devices_warranty ON devices (warranty_day);
CREATE INDEX IF NOT EXISTS tickets_device ON tickets (device_id);
CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state);
CREATE INDEX IF NOT EXISTS tickets_state_opened ON tickets (state, opened_us, id);
CREATE INDEX IF NOT EXISTS tickets_site ON tickets (site_id, id);
CREATE INDEX IF NOT EXISTS tickets_patient ON tickets (patient, id);
CREATE INDEX IF NOT EXISTS tickets_assignee ON tickets (assignee, state);
CREATE INDEX IF NOT EXISTS tickets_opened ON tickets (opened_us, id);
CREATE INDEX IF NOT EXISTS tickets_updated ON tickets (updated_us, id);
CREATE INDEX IF NOT EXISTS tickets_due ON tickets (due_us, id);
CREATE INDEX IF NOT EXISTS tickets_respond_breach ON tickets (respond_breach_us);
CREATE INDEX IF NOT EXISTS tickets_resolve_breach ON tickets (resolve_breach_us);
CREATE INDEX IF NOT EXISTS tickets_escalate ON tickets (escalate_us);
CREATE INDEX IF NOT EXISTS tickets_clocks ON tickets (clocks);
"""
# The tickets engineers hold now, for the load auto-dispatch weighs (see HELD_CONDITION).
_HELD_INDEX = (
    f"CREATE INDEX IF NOT EXISTS tickets_held ON tickets (assignee, id) WHERE {HELD_CONDITION}"
)
_OPEN_INDEX = f"CREATE INDEX IF NOT EXISTS tickets_open ON tickets (id) WHERE {OPEN_CONDITION}"
# Columns added since the first release: (table, column, type).
_UPGRADES: tuple[tuple[str, str, str], ...] = (
    ("tickets", "version", "INTEGER NOT NULL DEFAULT 1"),
    *(("tickets", name, kind) for name, kind in TICKET_COLUMNS),
    *(("devices", name, kind) for name, kind in DEVICE_COLUMNS),
)
DIALECT = Dialect(
    tickets="tickets",
    devices="devices",
    audit="audit_log",
    signatures="audit_signatures",
    credits="service_credits",
    knowledge="service_knowledge",
    stock="service_stock",
    reservations="service_reservations",
    harm="service_harm_flags",
    quiet_hours="service_quiet_hours",
    doc="doc",
    doc_text="json_extract(doc, '$.{}')",
    greatest="max",
    differs="IS NOT",
    knowledge_match=knowledge_search.SQLITE_MATCH,
    knowledge_terms=knowledge_search.fts5_terms,
)
READERS = 4  # connections reading beside the one writer (file databases in WAL mode)

# Deliveries recorded before at_s existed get it from their document (julianday → epoch s).
_BACKFILL_DELIVERY_AT = (
    "UPDATE deliveries SET at_s = (julianday(json_extract(doc, '$.at')) - 2440587.5) * 86400.0"
)
# kind → (table, key, condition on the cutoff) of what retention prunes; the outbox condition
# is served by outbox_pending, the others by deliveries_at and service_dead_letters_received.
_PRUNES = {
    "notifications": ("outbox", "key", "status IN (?, ?) AND next_at < ?"),
    "deliveries": ("deliveries", "n", "at_s < ?"),
    # received_at is always utc_text: "+00:00" after a 6-digit fraction or none, and "+" sorts
    # before ".", so text order is time order, exact to the µs (julianday keeps milliseconds).
    "dead_letters": ("service_dead_letters", "n", "received_at < ?"),
}
_FINISHED = (str(OutboxStatus.DONE), str(OutboxStatus.FAILED))

_BUSY = ("database is locked", "database table is locked", "database is busy")


@contextmanager
def _locked_is_unavailable() -> Iterator[None]:
    """Turn SQLite's busy/locked error into StorageUnavailable; anything else passes."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if any(text in str(exc) for text in _BUSY):
            raise StorageUnavailable(f"SQLite service store busy: {exc}") from exc
        raise


class _Readers:
    """Connections for reads outside a transaction: WAL lets them run beside the writer."""

    def __init__(self, path: str, busy_timeout_s: float, size: int) -> None:
        self._path, self._timeout = path, busy_timeout_s
        self._free: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A reader connection, returned afterwards; waits while all ``size`` are in use."""
        with self._slots:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            try:
                conn = self._free.get_nowait()
            except queue.Empty:
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=self._timeout
                )
                conn.execute("PRAGMA query_only=ON")
            try:
                yield conn
            finally:
                with self._lock:
                    # One in use while the store closed is closed by its user, never under it.
                    if self._closed:
                        conn.close()
                    else:
                        self._free.put(conn)

    def close(self) -> None:
        """Close the idle reader connections now, the busy ones as they come back."""
        with self._lock:
            self._closed = True
            while not self._free.empty():
                self._free.get_nowait().close()


class SqliteStore(SqlQueries, RemoteQueries):
    """ServiceStore on one SQLite database; safe to share between threads.

    One writer connection, its transactions serialised by a lock (``atomic``); reads outside a
    transaction go to a few reader connections that WAL lets run while the writer writes, so a
    long read never holds up intake. An in-memory database has the one connection only.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        busy_timeout_s: float = 5.0,
        sla: SlaConfig | None = None,
        readers: int = READERS,
    ) -> None:
        # Autocommit mode: transactions are opened explicitly by atomic().
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._lock = threading.RLock()
        self._writing: int | None = None  # the thread whose transaction is open
        self.dialect = DIALECT
        self.sla = sla or SlaConfig()
        self.audit_signer: AuditSigner | None = None
        self.prune_chunk_rows = CHUNK_ROWS  # rows per prune transaction at most
        memory = str(path) == ":memory:"
        self._readers: _Readers | None = None  # until migrated: everything on the writer
        with _locked_is_unavailable():
            if not memory:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_TABLES)
            self._db.executescript(REMOTE_TABLES_SQLITE)
        self._migrate()
        self._readers = None if memory else _Readers(str(path), busy_timeout_s, readers)

    def _migrate(self) -> None:
        """Bring a database made by an older release up to this schema."""
        with self.atomic():
            for table, column, kind in _UPGRADES:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(deliveries)")}
            if "at_s" not in columns:
                self._db.execute("ALTER TABLE deliveries ADD COLUMN at_s REAL")
                self._db.execute(_BACKFILL_DELIVERY_AT)
            self._db.execute("CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at_s)")
            for statement in [*_INDEXES.strip().splitlines(), _HELD_INDEX, _OPEN_INDEX]:
                self._db.execute(statement)
            self._migrate_knowledge_search()
        self.backfill()

    def _migrate_knowledge_search(self) -> None:
        """Create the knowledge base's full-text index; filled from the entries when new."""
        made = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'service_knowledge_fts'"
        ).fetchone()
        if made is None:
            self._db.execute(knowledge_search.SQLITE_TABLE)
            self._db.execute(knowledge_search.SQLITE_FILL)

    def _index_knowledge(self, entry: KnowledgeEntry) -> None:
        """Keep the entry's row of the full-text index in step (same rowid, same transaction)."""
        ((rowid,),) = self._rows(
            "SELECT rowid FROM service_knowledge WHERE model = ? AND code = ?",
            (entry.model, entry.code),
        )
        self._execute("DELETE FROM service_knowledge_fts WHERE rowid = ?", (rowid,))
        self._execute(
            "INSERT INTO service_knowledge_fts (rowid, text) VALUES (?, ?)",
            (rowid, entry.search_text()),
        )

    def close(self) -> None:
        """Close the database (after a transaction another thread has open, never under it)."""
        if self._readers is not None:
            self._readers.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction around everything inside; nested calls join the outer one."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            with _locked_is_unavailable():
                self._db.execute("BEGIN IMMEDIATE")
            self._writing = threading.get_ident()
            try:
                with _locked_is_unavailable():
                    yield
                    self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT leaves it open too
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._writing = None

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write inside ``atomic()``; the rows it touched."""
        return int(self._db.execute(query, tuple(params)).rowcount)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.atomic():
            self._db.execute(sql, params)

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read: in this thread's open transaction, else on a reader beside the writer."""
        if self._readers is None or self._writing == threading.get_ident():
            with self._lock, _locked_is_unavailable():
                return self._db.execute(query, tuple(params)).fetchall()
        with self._readers.connection() as conn, _locked_is_unavailable():
            return conn.execute(query, tuple(params)).fetchall()

    def _one(self, model: type[M], table: str, key: str) -> M | None:
        rows = self._rows(f"SELECT doc FROM {table} WHERE id = ?", (key,))
        return model.model_validate_json(rows[0][0]) if rows else None

    def _many(self, model: type[M], sql: str, params: tuple[Any, ...] = ()) -> list[M]:
        return [model.model_validate_json(r[0]) for r in self._rows(sql, params)]

    def lock_device(self, device_id: str) -> None:
        """Serialise changes of one device's tickets: SQLite's one writer already does."""

    def put_site(self, site: Site) -> None:
        """Insert or replace a site."""
        self._write("INSERT OR REPLACE INTO sites VALUES (?, ?)", (site.id, site.model_dump_json()))

    def site(self, site_id: str) -> Site | None:
        """One site, or None."""
        return self._one(Site, "sites", site_id)

    def sites(self) -> list[Site]:
        """All sites by id."""
        return self._many(Site, "SELECT doc FROM sites ORDER BY id")

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

    def ticket(self, ticket_id: str) -> Ticket | None:
        """One ticket, or None."""
        rows = self._rows("SELECT doc, version FROM tickets WHERE id = ?", (ticket_id,))
        return ticket_at(rows[0][0], rows[0][1]) if rows else None

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
        rows = self._rows(f"SELECT doc, version FROM tickets{where} ORDER BY id", tuple(params))
        return [ticket_at(doc, version) for doc, version in rows]

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
            if self.audit_signer is not None:
                self._db.execute(
                    "INSERT INTO audit_signatures VALUES (?, ?)",
                    (entry.seq, self.audit_signer(entry)),
                )
        return entry

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        return [audit.from_row(r) for r in self._rows("SELECT * FROM audit_log ORDER BY seq")]

    def audit_rows(self) -> list[tuple[Any, ...]]:
        """Every audit row as stored, in sequence order."""
        return [tuple(r) for r in self._rows("SELECT * FROM audit_log ORDER BY seq")]

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep one notification delivery attempt."""
        self._write(
            "INSERT INTO deliveries (event_id, doc, at_s) VALUES (?, ?, ?)",
            (delivery.event_id, delivery.model_dump_json(), delivery.at.timestamp()),
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
                    "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)", outbox_row(item)
                )

    def update_notification(self, item: OutboxItem) -> None:
        """Replace an outbox item (attempts, status, next try) by its key."""
        self._write("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)", outbox_row(item))

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
        rows = self._rows("SELECT at FROM cursors WHERE name = ?", (name,))
        return datetime.fromisoformat(rows[0][0]) if rows else None

    def set_cursor(self, name: str, at: datetime) -> None:
        """Persist a position; call inside ``atomic()`` with what it covers."""
        self._write("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (name, utc_text(at)))

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep a message the worker could not use, with the reason."""
        self._write(
            "INSERT INTO service_dead_letters (received_at, topic, reason, payload)"
            " VALUES (?, ?, ?, ?)",
            (utc_text(letter.received_at), letter.topic, letter.reason, letter.payload),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters, newest first."""
        rows = self._rows(
            "SELECT received_at, topic, reason, payload FROM service_dead_letters"
            " ORDER BY n DESC LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(received_at=datetime.fromisoformat(at), topic=t, reason=r, payload=p)
            for at, t, r, p in rows
        ]

    def prune_notifications(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove outbox items delivered or given up whose last try was due before the cutoff."""
        return self._prune(
            "notifications", (*_FINISHED, older_than.timestamp()), older_than, dry_run
        )

    def prune_deliveries(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove delivery attempts made before ``older_than``."""
        return self._prune("deliveries", (older_than.timestamp(),), older_than, dry_run)

    def prune_dead_letters(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than``."""
        return self._prune("dead_letters", (utc_text(older_than),), older_than, dry_run)

    def _prune(
        self, kind: str, params: tuple[Any, ...], older_than: datetime, dry_run: bool
    ) -> Pruned:
        """Count, or delete in bounded transactions, the rows of ``kind`` past the cutoff."""
        table, key, where = _PRUNES[kind]
        cutoff_us = us_from_datetime(older_than)
        if dry_run:
            [(count,)] = self._rows(f"SELECT count(*) FROM {table} WHERE {where}", params)
            return Pruned(kind, int(count), cutoff_us)
        delete = (
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {where} LIMIT ?)"
        )

        def chunk(limit: int) -> int:
            # One short transaction per chunk: the worker's writes get the lock in between.
            with self.atomic():
                return max(self._db.execute(delete, (*params, limit)).rowcount, 0)

        return Pruned(kind, delete_in_chunks(chunk, self.prune_chunk_rows), cutoff_us)

    def put_udi(self, record: UdiRecord) -> None:
        """Insert or replace the UDI a device was registered with."""
        self._write(
            "INSERT OR REPLACE INTO device_udi VALUES (?, ?, ?)",
            (record.device_id, record.lot, record.model_dump_json()),
        )

    def udi(self, device_id: str) -> UdiRecord | None:
        """The UDI of one device, or None."""
        rows = self._rows("SELECT doc FROM device_udi WHERE device_id = ?", (device_id,))
        return UdiRecord.model_validate_json(rows[0][0]) if rows else None

    def udis(self, lot: str | None = None) -> list[UdiRecord]:
        """UDI records by device id, optionally of one lot."""
        if lot is None:
            return self._many(UdiRecord, "SELECT doc FROM device_udi ORDER BY device_id")
        return self._many(
            UdiRecord, "SELECT doc FROM device_udi WHERE lot = ? ORDER BY device_id", (lot,)
        )

    def put_recall(self, recall: Recall) -> None:
        """Insert or replace a recalled lot."""
        self._write(
            "INSERT OR REPLACE INTO recalls VALUES (?, ?, ?)",
            (recall.key, recall.lot, recall.model_dump_json()),
        )

    def recalls(self) -> list[Recall]:
        """Every recalled lot, by lot."""
        return self._many(Recall, "SELECT doc FROM recalls ORDER BY key")
