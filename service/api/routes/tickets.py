"""Tickets in the caller's scope: list, read, open, and move them through their lifecycle."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from service import desk
from service.api.deps import ID_PATTERN, CallerDep, Id, NowDep, StoreDep
from service.api.events import EVENT_ROLES, build_event
from service.api.schemas import EventRequest, NewTicket, Principal, Role
from service.api.scope import actor, visible_device, visible_devices, visible_ticket
from service.lifecycle import TransitionError
from service.model import StateChange, Ticket, TicketState
from service.store import ServiceStore

router = APIRouter(prefix="/tickets", tags=["tickets"])


@router.get("")
def tickets(
    who: CallerDep,
    store: StoreDep,
    state: TicketState | None = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[Ticket]:
    """Tickets of the caller's devices, optionally of one state or device."""
    mine = {d.id for d in visible_devices(store, who)}
    wanted = None if device_id is None else [device_id]
    return [
        t for t in store.tickets(None if state is None else [state], wanted) if t.device_id in mine
    ]


@router.get("/{ticket_id}")
def ticket(who: CallerDep, store: StoreDep, ticket_id: Id) -> Ticket:
    """One ticket (404 outside the caller's scope)."""
    return visible_ticket(store, who, ticket_id)


@router.get("/{ticket_id}/transitions")
def ticket_transitions(who: CallerDep, store: StoreDep, ticket_id: Id) -> list[StateChange]:
    """Every state change of one ticket, oldest first."""
    return list(visible_ticket(store, who, ticket_id).history)


@router.post("", status_code=status.HTTP_201_CREATED)
def open_ticket(who: CallerDep, store: StoreDep, now: NowDep, body: NewTicket) -> Ticket:
    """One-click repair: open a ticket on a device in the caller's scope (audited)."""
    visible_device(store, who, body.device_id)
    return desk.open_ticket(
        store, body.device_id, body.tier, body.title, actor(who), uuid.uuid4().hex, now
    )


def _may_send(store: ServiceStore, who: Principal, current: Ticket, body: EventRequest) -> None:
    """422 for an unknown event or engineer, 403 for a role that may not send it here."""
    roles = EVENT_ROLES.get(body.event)
    if roles is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown event {body.event}")
    if who.role not in roles or (who.role is Role.ENGINEER and current.assignee != who.subject):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not {body.event} this")
    if body.event == "dispatch" and store.engineer(body.engineer_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"engineer {body.engineer_id} not found"
        )


@router.post("/{ticket_id}/events")
def ticket_event(
    who: CallerDep, store: StoreDep, now: NowDep, ticket_id: Id, body: EventRequest
) -> Ticket:
    """Apply one lifecycle event (409 if the ticket's state does not allow it; audited)."""
    _may_send(store, who, visible_ticket(store, who, ticket_id), body)
    try:
        return desk.apply(store, ticket_id, build_event(body), actor(who), now)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
