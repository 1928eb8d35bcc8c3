"""What the service backbone needs from storage: the ``ServiceStore`` protocol.

Every implementation raises ``infra.errors.StorageUnavailable`` when its database cannot be
reached for now (the caller retries the whole transaction) and ``ConcurrentUpdate`` when a
ticket changed since it was read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol

from contract.health import GatewayHealth
from infra.retention import Pruned
from service.audit import AuditEntry, AuditSigner
from service.commands_model import CommandRecord, CommandState
from service.compensation import ServiceCredit
from service.knowledge import KnowledgeEntry
from service.model import (
    DeadLetter,
    Delivery,
    Device,
    Engineer,
    OutboxItem,
    Patient,
    Site,
    Ticket,
    TicketState,
)
from service.notifications import QuietHours
from service.parts import Reservation, Stock
from service.presence_model import PresenceRecord
from service.schedules import ScheduleConfig
from service.sla import SlaConfig
from service.store.aggregates import CreditTotals, KpiFacts
from service.store.queries import (
    CreditQuery,
    DeviceQuery,
    DeviceRow,
    FleetRow,
    KnowledgeQuery,
    Position,
    Scope,
    StockQuery,
    TicketQuery,
)
from service.traceability.model import Recall, UdiRecord
from service.vigilance import HarmFlag


class ServiceStore(Protocol):
    """What the service backbone needs from storage."""

    # Set by the composition root when an audit signing key is configured: every appended row's
    # hash is then signed in the same transaction (``service.checkpoint.row_signature``).
    audit_signer: AuditSigner | None
    # The SLA policy the tickets' clock columns (deadlines, breach and escalation instants) are
    # computed with when written; see ``refresh_clocks`` for rows computed under another one.
    sla: SlaConfig

    def atomic(self) -> AbstractContextManager[None]:
        """Group the calls inside into one transaction; nested calls join the outer one."""
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

    def device_page(self, query: DeviceQuery) -> list[Device]:
        """One keyset page of devices, by id."""
        ...

    def device_rows(self, query: DeviceQuery) -> list[DeviceRow]:
        """Where the devices ``query`` selects stand (id, kind, model, ward, room, patient)."""
        ...

    def fleet_rows(self, query: DeviceQuery) -> list[FleetRow]:
        """What failure rates and reports read of the devices ``query`` selects (no documents)."""
        ...

    def device_ids(self, query: DeviceQuery) -> list[str]:
        """The ids of the devices ``query`` selects, by id."""
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

    def put_ticket(self, ticket: Ticket) -> Ticket:
        """Write ``ticket`` over the revision it was read at; return it at its new version.

        A ticket of version 0 is inserted at version 1. Raises ``ConcurrentUpdate`` when the
        stored revision is no longer ``ticket.version`` (or, for an insert, the id exists).
        """
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

    def ticket_page(self, query: TicketQuery) -> list[tuple[Ticket, Position]]:
        """One keyset page of tickets, each with its position under the query's sort."""
        ...

    def lock_device(self, device_id: str) -> None:
        """Inside ``atomic()``: serialise changes of one device's tickets until it ends."""
        ...

    def engineer_load(self, engineer_ids: Sequence[str], exclude_ticket: str) -> dict[str, int]:
        """Tickets each engineer holds now (dispatched … waiting), but ``exclude_ticket``."""
        ...

    def escalations_due(self, now: datetime) -> list[str]:
        """Ids of the tickets whose escalation instant is before ``now``, earliest first."""
        ...

    def undispatched(self, limit: int, after: tuple[int, str] | None = None) -> list[str]:
        """Ids of open (undispatched) tickets, oldest first; keyset ``after`` = (opened µs, id)."""
        ...

    def breach_candidates(self, since: datetime, now: datetime) -> list[Ticket]:
        """Tickets whose stored breach instants fall in [since, now): a superset of the breaches."""
        ...

    def schedule_candidates(self, today: date, config: ScheduleConfig) -> list[Device]:
        """Devices that may need a preventive or warranty ticket ``today``: a superset, by id."""
        ...

    def refresh_clocks(self, limit: int | None = None, *, missing_only: bool = False) -> int:
        """Recompute the clock columns of tickets computed under another SLA policy; how many."""
        ...

    def kpi_facts(self, scope: Scope, now: datetime) -> KpiFacts:
        """The KPIs' sums over the tickets and devices of ``scope`` as of ``now``."""
        ...

    def put_credit(self, credit: ServiceCredit) -> bool:
        """Keep a service credit; False (nothing changed) when its key is already kept."""
        ...

    def credits(self, query: CreditQuery) -> list[ServiceCredit]:
        """One keyset page of service credits, by breach instant and key."""
        ...

    def credit_totals(self, query: CreditQuery) -> list[CreditTotals]:
        """Count and sum of the credits ``query`` selects, per currency."""
        ...

    def put_knowledge(self, entry: KnowledgeEntry) -> None:
        """Insert or replace the knowledge of one (model, fault code)."""
        ...

    def knowledge_for(self, model: str, codes: Sequence[str]) -> list[KnowledgeEntry]:
        """Entries of ``model`` and of any model for ``codes``, the model's own first."""
        ...

    def knowledge_page(self, query: KnowledgeQuery) -> list[KnowledgeEntry]:
        """One keyset page (by model, code) of the entries matching ``query``."""
        ...

    def put_stock(self, warehouse: str, part: str, on_hand: int, low_at: int) -> Stock:
        """Set a warehouse's stock of a part and its low mark (reservations kept); the row."""
        ...

    def stock(self, warehouse: str, part: str) -> Stock | None:
        """One warehouse's stock of one part, or None."""
        ...

    def stock_page(self, query: StockQuery) -> list[Stock]:
        """One keyset page (by warehouse, part) of stock rows."""
        ...

    def reserve(self, ticket_id: str, warehouse: str, part: str, quantity: int) -> bool:
        """Hold ``quantity`` of a part for a ticket if that many are available; whether held."""
        ...

    def reservations(self, ticket_id: str) -> list[Reservation]:
        """The parts held for one ticket."""
        ...

    def consume(self, ticket_id: str, warehouse: str, parts: Mapping[str, int]) -> None:
        """Take used parts out of stock (their reservation first), then release the rest."""
        ...

    def release(self, ticket_id: str) -> None:
        """Give back every part still held for a ticket."""
        ...

    def low_stock_unalerted(self, limit: int) -> list[Stock]:
        """Low stock rows the team has not been told about since they fell."""
        ...

    def mark_stock_alerted(self, warehouse: str, part: str) -> bool:
        """Note that the team was told a row is low; False when it is not (or was told)."""
        ...

    def put_quiet_hours(self, recipient: str, quiet: QuietHours | None, at: datetime) -> None:
        """Keep what ``recipient`` (``role/subject``) chose: quiet hours, or None for none."""
        ...

    def quiet_hours_chosen(self, recipients: Sequence[str]) -> dict[str, QuietHours | None]:
        """What each of ``recipients`` chose, for those who chose."""
        ...

    def flag_harm(self, flag: HarmFlag) -> bool:
        """Keep the first harm flag of a ticket; False when it already has one."""
        ...

    def harm_flag(self, ticket_id: str) -> HarmFlag | None:
        """The harm flag of one ticket, or None."""
        ...

    def harm_flags(self, limit: int, after: tuple[int, str] | None = None) -> list[HarmFlag]:
        """One keyset page of harm flags, oldest first."""
        ...

    def append_audit(
        self, at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any]
    ) -> AuditEntry:
        """Chain and store one audit entry atomically; return it."""
        ...

    def audit_log(self) -> list[AuditEntry]:
        """Every audit entry in sequence order."""
        ...

    def audit_rows(self) -> list[tuple[Any, ...]]:
        """Every audit row as stored, in sequence order (``audit.parse_rows`` reads them)."""
        ...

    def audit_head(self) -> AuditEntry | None:
        """The last audit entry (the chain's head), or None for an empty log; one row read."""
        ...

    def audit_seq_of(self, digest: str) -> int | None:
        """The seq of the last audit row whose hash is ``digest``, or None (for broken links)."""
        ...

    def audit_rows_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` audit rows as stored with a seq above ``seq``, in sequence order."""
        ...

    def audit_signatures(self, since_seq: int = 0, until_seq: int | None = None) -> dict[int, str]:
        """The signature of each signed audit row in (since_seq, until_seq], by seq."""
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

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep a message the worker could not use, with the reason."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters, newest first."""
        ...

    def prune_notifications(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove outbox items delivered or given up whose last try was due before ``older_than``.

        Pending items are never pruned, however old: they are still to be delivered.
        """
        ...

    def prune_deliveries(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove delivery attempts made before ``older_than`` (a dry run only counts them)."""
        ...

    def prune_dead_letters(self, older_than: datetime, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than`` (a dry run only counts them)."""

    def put_udi(self, record: UdiRecord) -> None:
        """Insert or replace the UDI a device was registered with."""
        ...

    def udi(self, device_id: str) -> UdiRecord | None:
        """The UDI of one device, or None."""
        ...

    def udis(self, lot: str | None = None) -> list[UdiRecord]:
        """UDI records by device id, optionally of one lot."""
        ...

    def put_recall(self, recall: Recall) -> None:
        """Insert or replace a recalled lot."""
        ...

    def recalls(self) -> list[Recall]:
        """Every recalled lot, by lot."""
        ...

    # --- remote diagnosis and presence (issue 16; RemoteQueries in sql_store.py) -------------

    def put_command(self, record: CommandRecord) -> bool:
        """Insert a new command; False when its id exists already."""
        ...

    def update_command(self, record: CommandRecord, expected: Sequence[CommandState]) -> bool:
        """Write ``record`` over a command still in one of ``expected`` states; False if not."""
        ...

    def command(self, command_id: str) -> CommandRecord | None:
        """One command, or None."""
        ...

    def ticket_commands(self, ticket_id: str, limit: int = 200) -> list[CommandRecord]:
        """A ticket's commands, oldest first."""
        ...

    def commands_in_state(self, state: CommandState, limit: int = 100) -> list[CommandRecord]:
        """Commands in ``state``, oldest first."""
        ...

    def commands_overdue(self, now_us: int, limit: int = 100) -> list[CommandRecord]:
        """Pending commands whose time for a result is up."""
        ...

    def put_presence(self, record: PresenceRecord) -> None:
        """Insert or replace one subject's presence."""
        ...

    def presence(self, subject_id: str) -> PresenceRecord | None:
        """One gateway's or device's presence, or None."""
        ...

    def put_gateway_health(self, health: GatewayHealth) -> bool:
        """Keep a gateway's health summary unless a newer one is stored."""
        ...

    def gateway_health(self, gateway_id: str) -> GatewayHealth | None:
        """A gateway's latest health summary, or None."""
        ...
