"""The service desk: runs the pure rules against a store and audits every change.

This is the only module that combines decisions (intake, dispatch, lifecycle, escalation) with
persistence; ``now`` still comes from the caller.

Ticket writes are optimistic: a ticket changed by someone else since it was read raises
``ConcurrentUpdate``. Machine-made changes (alerts, escalations, schedules) run through
``retrying``, which re-reads and decides again; a person's change (``apply``) is not retried —
the API answers 409 and the person looks again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel

from contract import AlertEvent
from service import audit
from service.concurrency import ConcurrentUpdate
from service.dispatch import Assignment, NoEngineer, assign
from service.escalation import Escalation, escalate_loaded, escalations_due
from service.intake import alert_time, open_or_append
from service.knowledge import KnowledgeEntry, fault_codes
from service.lifecycle import Dispatch, Event, Reopen, Resolve, transition
from service.model import (
    OPEN_STATES,
    Device,
    Engineer,
    Patient,
    Site,
    Ticket,
    TicketKind,
    TicketState,
    Tier,
    new_ticket,
)
from service.parts import counted, warehouse_of
from service.schedules import ScheduleConfig, ScheduledTask, due_tasks, ticket_for
from service.sla import Breach, SlaConfig, breaches_between
from service.store import ServiceStore

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFLICT_ATTEMPTS = 8  # tries of one machine-made change before ConcurrentUpdate is raised


class NotFound(LookupError):
    """A ticket, device or site the request names does not exist."""


def retrying(store: ServiceStore, work: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """``work()`` in one transaction, run again from fresh reads when a ticket write loses a race.

    Call it outside any transaction: a retry inside an outer one would keep the outer one's
    stale decisions. Raises ConcurrentUpdate once ``attempts`` are used up.
    """
    for attempt in range(1, attempts + 1):
        try:
            with store.atomic():
                return work()
        except ConcurrentUpdate as exc:
            if attempt == attempts:
                raise
            log.info("concurrent ticket change (%s); retrying (%d/%d)", exc, attempt, attempts)
            # Jittered so two writers that just collided do not collide again in lockstep.
            time.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")


def save(
    store: ServiceStore,
    ticket: Ticket,
    actor: str,
    action: str,
    at: datetime,
    data: Mapping[str, Any] | None = None,
) -> Ticket:
    """Store ``ticket`` and its audit entry in one transaction; return it as stored (versioned)."""
    with store.atomic():
        stored = store.put_ticket(ticket)
        digest = audit.document_digest(stored.model_dump(mode="json"))
        fields = {"state": ticket.state, **(data or {}), audit.DOC_DIGEST_KEY: digest}
        store.append_audit(at, actor, action, ticket.id, fields)
    return stored


def event_fields(event: Event) -> dict[str, Any]:
    """A lifecycle event's fields as JSON-ready values, for its audit row (bytes as SHA-256)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, bytes):
            fields[f"{field.name}_sha256"] = hashlib.sha256(value).hexdigest()
        elif isinstance(value, tuple):
            fields[field.name] = [str(v) for v in value]
        elif value is None or isinstance(value, bool | int | float | str):
            fields[field.name] = value
        else:
            fields[field.name] = str(value)
    return fields


def _staff(store: ServiceStore, site: Site, also: str | None = None) -> list[Engineer]:
    """The engineers of ``site``'s region, and ``also`` (e.g. a lapsed assignee) wherever."""
    staff = store.engineers(region=site.region)
    if also is not None and all(e.id != also for e in staff):
        extra = store.engineer(also)
        staff += [extra] if extra is not None else []
    return staff


# (region, device family) pairs found without a free engineer in this round of retries.
Blocked = set[tuple[str, str]]


def auto_dispatch(
    store: ServiceStore, ticket: Ticket, at: datetime, blocked: Blocked | None = None
) -> Ticket:
    """Dispatch an open ticket to the best engineer; leave it open (and say why) if none fits.

    Only the region's engineers are read, and their load is counted by the store in SQL, so a
    dispatch costs the same however many tickets are open. When nobody fits, the reason is
    stored on the ticket (``dispatch_reason``) and audited — once per distinct reason, so the
    worker retrying every tick does not grow the audit log. ``blocked`` remembers, for one
    round of retries, the (region, family) pairs that had nobody free.
    """
    device = store.device(ticket.device_id)
    site = store.site(device.site_id) if device else None
    if device is None or site is None:
        outcome: Assignment | NoEngineer = NoEngineer(f"device {ticket.device_id} not installed")
    elif blocked is not None and (site.region, str(device.kind)) in blocked:
        return ticket
    else:
        staff = _staff(store, site)
        load = store.engineer_load([e.id for e in staff], ticket.id)
        outcome = assign(device, site, staff, load)
        if blocked is not None and isinstance(outcome, NoEngineer):
            blocked.add((site.region, str(device.kind)))
    if isinstance(outcome, NoEngineer):
        if ticket.dispatch_reason == outcome.reason:
            return ticket
        waiting = ticket.model_copy(update={"dispatch_reason": outcome.reason})
        return save(store, waiting, "dispatcher", "dispatch_failed", at, {"reason": outcome.reason})
    moved = transition(ticket, Dispatch(outcome.engineer_id, outcome.reason), at)
    saved = save(store, moved, "dispatcher", "dispatched", at, {"engineer": outcome.engineer_id})
    assert site is not None  # an assignment needs the site's region
    reserve_kit(store, saved, site.region, at)
    return saved


def reserve_kit(store: ServiceStore, ticket: Ticket, region: str, at: datetime) -> None:
    """Hold the parts of the ticket's likely fix in its region's warehouse; audit what is short.

    The kit is the first fix of the ticket's best knowledge-base entry; no entry, no kit.
    """
    found = suggestions(store, ticket)
    kit = counted(found[0].kit) if found else {}
    if not kit:
        return
    warehouse = warehouse_of(region)
    held, short = {}, {}
    for part, quantity in kit.items():
        if store.reserve(ticket.id, warehouse, part, quantity):
            held[part] = quantity
        else:
            short[part] = quantity
    data = {"warehouse": warehouse, "reserved": held, "short": short}
    store.append_audit(at, "parts", "parts_reserved", ticket.id, data)


def consume_parts(
    store: ServiceStore, ticket: Ticket, parts: tuple[str, ...], at: datetime
) -> None:
    """A fix's reported ``parts`` leave the stock; what the ticket held beyond them returns.

    The warehouse is that of the engineer's region (or where the parts were held).
    """
    held = store.reservations(ticket.id)
    engineer = store.engineer(ticket.assignee) if ticket.assignee else None
    if engineer is not None:
        warehouse = warehouse_of(engineer.region)
    elif held:
        warehouse = held[0].warehouse
    else:
        return
    used = counted(parts)
    if not used and not held:
        return
    store.consume(ticket.id, warehouse, used)
    store.append_audit(
        at, "parts", "parts_consumed", ticket.id, {"warehouse": warehouse, "used": used}
    )


def dispatch_waiting_one(
    store: ServiceStore, ticket_id: str, at: datetime, blocked: Blocked
) -> Ticket | None:
    """Try again to dispatch one undispatched ticket; the ticket if it was dispatched now."""
    with store.atomic():
        ticket = store.ticket(ticket_id)
        if ticket is None or ticket.state is not TicketState.OPEN:
            return None
        store.lock_device(ticket.device_id)
        moved = auto_dispatch(store, ticket, at, blocked)
        return moved if moved.assignee is not None else None


def waiting_ids(store: ServiceStore, limit: int) -> list[str]:
    """Up to ``limit`` undispatched tickets, oldest first (an index range, never a scan)."""
    return store.undispatched(limit)


def dispatch_waiting(store: ServiceStore, at: datetime, limit: int = 200) -> list[Ticket]:
    """Retry dispatching the oldest ``limit`` undispatched tickets, each in its transaction.

    Called when capacity may have freed (a ticket resolved) and by the worker every tick.
    """
    blocked: Blocked = set()
    done = []
    for ticket_id in waiting_ids(store, limit):
        work = partial(dispatch_waiting_one, store, ticket_id, at, blocked)
        if (ticket := retrying(store, work)) is not None:
            done.append(ticket)
    return done


def suggestions(store: ServiceStore, ticket: Ticket) -> list[KnowledgeEntry]:
    """The knowledge-base entries for ``ticket``'s device model and fault codes."""
    device = store.device(ticket.device_id)
    if device is None:
        return []
    return store.knowledge_for(device.model, fault_codes(ticket))


def _suggest(store: ServiceStore, ticket: Ticket, at: datetime) -> None:
    """Record which knowledge was suggested when ``ticket`` opened (nothing when none fits)."""
    found = suggestions(store, ticket)
    if found:
        keys = [f"{e.model}/{e.code}" for e in found]
        store.append_audit(at, "knowledge", "suggested", ticket.id, {"entries": keys})


def handle_alert(
    store: ServiceStore,
    alert: AlertEvent,
    new_id: str,
    at: datetime,
    config: SlaConfig,
    device_tickets: list[Ticket] | None = None,
) -> Ticket | None:
    """Open or extend the ticket for ``alert`` and dispatch it if new.

    ``device_tickets``: the device's tickets as this transaction read them (saves a read).
    """
    with store.atomic():
        if device_tickets is None:
            open_for_device = store.tickets(OPEN_STATES, device_ids=[alert.device_id])
        else:
            open_for_device = [t for t in device_tickets if t.state in OPEN_STATES]
        result = open_or_append(open_for_device, alert, new_id, config)
        if result.ticket is None:
            return None
        action = "opened" if result.created else "evidence_added"
        ticket = save(store, result.ticket, "alerts", action, at, {"rule": alert.rule_id})
        if not result.created:
            return ticket
        _suggest(store, ticket, at)
        return auto_dispatch(store, ticket, at)


def alert_ticket_id(alert: AlertEvent) -> str:
    """The id a ticket opened by ``alert`` gets: derived from the alert, so replays map to it."""
    key = f"{alert.device_id}\x1f{alert.rule_id}\x1f{alert.at_us}".encode()
    return "T-" + hashlib.sha256(key).hexdigest()[:16]


def already_handled(alert: AlertEvent, device_tickets: list[Ticket]) -> bool:
    """True when ``alert`` is on one of its device's tickets already (a redelivery)."""
    at = alert_time(alert)
    return any(
        t.rule_id == alert.rule_id
        and any(e.at == at and e.transition == alert.transition for e in t.evidence)
        for t in device_tickets
    )


def intake_alert(
    store: ServiceStore, alert: AlertEvent, at: datetime, config: SlaConfig
) -> tuple[Ticket | None, bool]:
    """``handle_alert`` made idempotent: (ticket or None, whether it was opened just now)."""
    with store.atomic():
        store.lock_device(alert.device_id)  # one intake per device at a time, in any process
        device_tickets = store.tickets(device_ids=[alert.device_id])  # read under the lock
        if already_handled(alert, device_tickets):
            return None, False
        new_id = alert_ticket_id(alert)
        ticket = handle_alert(store, alert, new_id, at, config, device_tickets)
        return ticket, ticket is not None and ticket.id == new_id


def put_installed(
    store: ServiceStore, item: Site | Device | Patient | Engineer, actor: str, at: datetime
) -> None:
    """Insert or replace a site, device, patient or engineer, with its audit entry."""
    kind = type(item).__name__.lower()
    with store.atomic():
        before = _current(store, item)
        match item:
            case Site():
                store.put_site(item)
            case Device():
                store.put_device(item)
            case Patient():
                store.put_patient(item)
            case Engineer():
                store.put_engineer(item)
        store.append_audit(
            at,
            actor,
            f"{kind}_{'replaced' if before else 'created'}",
            item.id,
            {"doc": item.model_dump(mode="json")},
        )


def _current(store: ServiceStore, item: BaseModel) -> BaseModel | None:
    match item:
        case Site(id=key):
            return store.site(key)
        case Device(id=key):
            return store.device(key)
        case Patient(id=key):
            return store.patient(key)
        case Engineer(id=key):
            return store.engineer(key)
    return None


def open_ticket(
    store: ServiceStore,
    device_id: str,
    tier: Tier,
    title: str,
    actor: str,
    new_id: str,
    at: datetime,
) -> Ticket:
    """A person's one-click repair request: open a manual ticket and dispatch it."""
    if store.device(device_id) is None:
        raise NotFound(f"device {device_id} not found")
    with store.atomic():
        ticket = new_ticket(new_id, device_id, tier, at, kind=TicketKind.MANUAL, title=title)
        saved = save(store, ticket, actor, "opened", at, {"title": title})
        _suggest(store, saved, at)
        return auto_dispatch(store, saved, at)


def apply(
    store: ServiceStore,
    ticket_id: str,
    event: Event,
    actor: str,
    at: datetime,
    expected_version: int | None = None,
) -> Ticket:
    """Apply a lifecycle event to a stored ticket; TransitionError leaves it untouched.

    With ``expected_version`` (the version the caller decided on, e.g. an If-Match header) a
    ticket changed since raises ConcurrentUpdate; so does a change that wins a race meanwhile.
    """
    with store.atomic():
        ticket = store.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found")
        if expected_version is not None and ticket.version != expected_version:
            raise ConcurrentUpdate(
                f"ticket {ticket_id} is at version {ticket.version}, not {expected_version}; "
                "read it again"
            )
        moved = transition(ticket, event, at)
        # Every field of the event is audited: the engineer, the fault, the parts, the signer.
        fields = {"event": event_fields(event)}
        stored = save(store, moved, actor, type(event).__name__.lower(), at, fields)
        if isinstance(event, Resolve):
            consume_parts(store, stored, event.parts, at)
        return stored


def reopen(
    store: ServiceStore,
    ticket_id: str,
    reason: str,
    actor: str,
    at: datetime,
    expected_version: int | None = None,
) -> Ticket:
    """Reopen a resolved (or later) ticket whose fault came back, and dispatch it again.

    Audited as ``reopen`` with the reason; TransitionError when the ticket is still open.
    """
    with store.atomic():
        moved = apply(store, ticket_id, Reopen(reason), actor, at, expected_version)
        return auto_dispatch(store, moved, at)


def escalate_one(
    store: ServiceStore, ticket_id: str, now: datetime, config: SlaConfig
) -> Escalation | None:
    """Escalate one ticket if it is (still) due at ``now``, in one transaction; None if not."""
    with store.atomic():
        ticket = store.ticket(ticket_id)
        if ticket is None or not escalations_due([ticket], now, config):
            return None
        device = store.device(ticket.device_id)
        site = store.site(device.site_id) if device else None
        if device is None or site is None:
            return None
        staff = _staff(store, site, also=ticket.assignee)
        load = store.engineer_load([e.id for e in staff], ticket.id)
        result = escalate_loaded(ticket, now, device, site, staff, load)
        first = ticket.assignee is None and result.ticket.assignee is not None
        saved = save(
            store,
            result.ticket,
            "escalation",
            "escalated",
            now,
            {
                "supervisor": result.supervisor_id,
                "lapsed": result.lapsed_assignee,
                "outcome": result.outcome.reason,
            },
        )
        if first:  # dispatched for the first time: hold its parts like any dispatch
            reserve_kit(store, saved, site.region, now)
        return result


def run_escalations(store: ServiceStore, now: datetime, config: SlaConfig) -> list[Escalation]:
    """Escalate every urgent ticket due at ``now``; the caller notifies the supervisors.

    The due tickets are found through their stored escalation instants (an index), not by
    reading every open ticket.
    """
    done = []
    for ticket_id in store.escalations_due(now):
        if (result := escalate_one(store, ticket_id, now, config)) is not None:
            done.append(result)
    return done


def schedule_tasks(
    store: ServiceStore, now: datetime, config: ScheduleConfig
) -> list[ScheduledTask]:
    """The preventive and warranty tasks due at ``now``.

    Decided by ``due_tasks`` over the few devices the store finds through their last-inspection
    and warranty-end columns, and their tickets only.
    """
    devices = store.schedule_candidates(now.date(), config)
    if not devices:
        return []
    tickets = store.tickets(device_ids=[d.id for d in devices])
    return due_tasks(devices, tickets, now, config)


def open_scheduled(
    store: ServiceStore, task: ScheduledTask, now: datetime, config: ScheduleConfig, new_id: str
) -> Ticket | None:
    """Open (and dispatch) the ticket of ``task`` if it is still due, in one transaction."""
    with store.atomic():
        store.lock_device(task.device_id)
        device = store.device(task.device_id)
        tickets = store.tickets(device_ids=[task.device_id])
        if device is None or task not in due_tasks([device], tickets, now, config):
            return None
        ticket = save(
            store,
            ticket_for(task, new_id, now),
            "scheduler",
            "opened",
            now,
            {"rule": task.rule_id, "reason": task.reason},
        )
        return auto_dispatch(store, ticket, now)


def run_schedules(
    store: ServiceStore, now: datetime, config: ScheduleConfig, new_id: Callable[[], str]
) -> list[Ticket]:
    """Open (and dispatch) the preventive and warranty tickets due at ``now``."""
    opened: list[Ticket] = []
    for task in schedule_tasks(store, now, config):
        if (ticket := open_scheduled(store, task, now, config, new_id())) is not None:
            opened.append(ticket)
    return opened


def breaches(
    store: ServiceStore, since: datetime, now: datetime, config: SlaConfig
) -> list[Breach]:
    """SLA breaches whose instant lies in [since, now); call with adjacent windows.

    Judged by ``breaches_between`` over the tickets whose stored breach instants fall in the
    window (an index), not over every ticket.
    """
    return breaches_between(store.breach_candidates(since, now), since, now, config)
