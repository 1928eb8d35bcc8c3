"""The service desk: runs the pure rules against a store and audits every change.

This is the only module that combines decisions (intake, dispatch, lifecycle, escalation) with
persistence; ``now`` still comes from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from contract import AlertEvent
from service.dispatch import Assignment, NoEngineer, dispatch
from service.escalation import Escalation, escalate, escalations_due
from service.intake import open_or_append
from service.lifecycle import Dispatch, Event, transition
from service.model import OPEN_STATES, Ticket, TicketKind, Tier, new_ticket
from service.schedules import ScheduleConfig, due_tasks, ticket_for
from service.sla import Breach, SlaConfig, breaches_between
from service.store import ServiceStore


class NotFound(LookupError):
    """A ticket, device or site the request names does not exist."""


def save(
    store: ServiceStore,
    ticket: Ticket,
    actor: str,
    action: str,
    at: datetime,
    data: Mapping[str, Any] | None = None,
) -> Ticket:
    """Store ``ticket`` and its audit entry in one transaction."""
    with store.atomic():
        store.put_ticket(ticket)
        store.append_audit(at, actor, action, ticket.id, {"state": ticket.state, **(data or {})})
    return ticket


def auto_dispatch(store: ServiceStore, ticket: Ticket, at: datetime) -> Ticket:
    """Dispatch an open ticket to the best engineer; leave it open (and say why) if none fits."""
    device = store.device(ticket.device_id)
    site = store.site(device.site_id) if device else None
    if device is None or site is None:
        outcome: Assignment | NoEngineer = NoEngineer(f"device {ticket.device_id} not installed")
    else:
        outcome = dispatch(ticket, device, site, store.engineers(), store.tickets(OPEN_STATES))
    if isinstance(outcome, NoEngineer):
        store.append_audit(
            at, "dispatcher", "dispatch_failed", ticket.id, {"reason": outcome.reason}
        )
        return ticket
    moved = transition(ticket, Dispatch(outcome.engineer_id, outcome.reason), at)
    return save(store, moved, "dispatcher", "dispatched", at, {"engineer": outcome.engineer_id})


def handle_alert(
    store: ServiceStore, alert: AlertEvent, new_id: str, at: datetime, config: SlaConfig
) -> Ticket | None:
    """Open or extend the ticket for ``alert`` and dispatch it if new."""
    with store.atomic():
        open_for_device = store.tickets(OPEN_STATES, device_ids=[alert.device_id])
        result = open_or_append(open_for_device, alert, new_id, config)
        if result.ticket is None:
            return None
        action = "opened" if result.created else "evidence_added"
        ticket = save(store, result.ticket, "alerts", action, at, {"rule": alert.rule_id})
        return auto_dispatch(store, ticket, at) if result.created else ticket


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
        save(store, ticket, actor, "opened", at, {"title": title})
        return auto_dispatch(store, ticket, at)


def apply(store: ServiceStore, ticket_id: str, event: Event, actor: str, at: datetime) -> Ticket:
    """Apply a lifecycle event to a stored ticket; TransitionError leaves it untouched."""
    with store.atomic():
        ticket = store.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found")
        moved = transition(ticket, event, at)
        return save(store, moved, actor, type(event).__name__.lower(), at)


def run_escalations(store: ServiceStore, now: datetime, config: SlaConfig) -> list[Escalation]:
    """Escalate every urgent ticket due at ``now``; the caller notifies the supervisors."""
    done: list[Escalation] = []
    with store.atomic():
        for ticket in escalations_due(store.tickets(OPEN_STATES), now, config):
            device = store.device(ticket.device_id)
            site = store.site(device.site_id) if device else None
            if device is None or site is None:
                continue
            result = escalate(
                ticket, now, device, site, store.engineers(), store.tickets(OPEN_STATES)
            )
            save(store, result.ticket, "escalation", "escalated", now,
                 {"supervisor": result.supervisor_id, "lapsed": result.lapsed_assignee,
                  "outcome": result.outcome.reason})  # fmt: skip
            done.append(result)
    return done


def run_schedules(
    store: ServiceStore, now: datetime, config: ScheduleConfig, new_id: Callable[[], str]
) -> list[Ticket]:
    """Open (and dispatch) the preventive and warranty tickets due at ``now``."""
    opened: list[Ticket] = []
    with store.atomic():
        for task in due_tasks(store.devices(), store.tickets(), now, config):
            ticket = save(store, ticket_for(task, new_id(), now), "scheduler", "opened",
                          now, {"rule": task.rule_id, "reason": task.reason})  # fmt: skip
            opened.append(auto_dispatch(store, ticket, now))
    return opened


def breaches(
    store: ServiceStore, since: datetime, now: datetime, config: SlaConfig
) -> list[Breach]:
    """SLA breaches that happened in (since, now]; call with adjacent windows."""
    return breaches_between(store.tickets(), since, now, config)
