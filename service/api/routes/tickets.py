"""Tickets in the caller's scope: list, read, open, and move them through their lifecycle."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from service import desk
from service.api.deps import (
    CallerDep,
    Id,
    LimitsDep,
    NowDep,
    OpenerDep,
    StoreDep,
    TokenKeyDep,
)
from service.api.events import EVENT_ROLES, build_event
from service.api.requests import EventRequest, NewTicket
from service.api.schemas import PatientStateChange, Principal, Role
from service.api.scope import actor, visible_device, visible_devices, visible_ticket
from service.api.text import ID_PATTERN
from service.api.views import TicketView, history_for, ticket_for
from service.lifecycle import TransitionError
from service.model import OPEN_STATES, StateChange, Ticket, TicketKind, TicketState
from service.store import ServiceStore

MAX_PAGE = 1000
MAX_OFFSET = 1_000_000

router = APIRouter(prefix="/tickets", tags=["tickets"])


@router.get("")
def tickets(
    who: CallerDep,
    store: StoreDep,
    state: TicketState | None = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[TicketView]:
    """Tickets of the caller's devices (by id), optionally of one state or device; one page."""
    mine = {d.id for d in visible_devices(store, who)}
    wanted = None if device_id is None else [device_id]
    found = [
        t for t in store.tickets(None if state is None else [state], wanted) if t.device_id in mine
    ]
    return [ticket_for(who, t) for t in found[offset : offset + limit]]


@router.get("/{ticket_id}")
def ticket(who: CallerDep, store: StoreDep, ticket_id: Id) -> TicketView:
    """One ticket (404 outside the caller's scope; patients get the patient view)."""
    return ticket_for(who, visible_ticket(store, who, ticket_id))


@router.get("/{ticket_id}/transitions")
def ticket_transitions(
    who: CallerDep, store: StoreDep, ticket_id: Id
) -> list[StateChange] | list[PatientStateChange]:
    """Every state change of one ticket, oldest first (patients: without notes)."""
    return history_for(who, visible_ticket(store, who, ticket_id))


def _open_manual(store: ServiceStore, device_id: str) -> Ticket | None:
    """The oldest open manual ticket of the device, if any."""
    found = [t for t in store.tickets(OPEN_STATES, [device_id]) if t.kind is TicketKind.MANUAL]
    return min(found, key=lambda t: (t.opened_at, t.id), default=None)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={status.HTTP_200_OK: {"description": "the device's open manual ticket"}},
)
def open_ticket(
    who: OpenerDep,
    store: StoreDep,
    now: NowDep,
    limits: LimitsDep,
    token: TokenKeyDep,
    body: NewTicket,
    response: Response,
) -> TicketView:
    """One-click repair on a device in the caller's scope (audited, auto-dispatched).

    While the device has an open manual ticket, that ticket is returned (200) instead of a
    new one, so repeated clicks cannot flood the engineers.
    """
    visible_device(store, who, body.device_id)
    # One transaction, so two clicks at once cannot both find no ticket and both open one.
    with store.atomic():
        existing = _open_manual(store, body.device_id)
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return ticket_for(who, existing)
        limits.new_ticket(token)
        made = desk.open_ticket(
            store, body.device_id, body.tier, body.title, actor(who), uuid.uuid4().hex, now
        )
    return ticket_for(who, made)


def _may_send(store: ServiceStore, who: Principal, current: Ticket, body: EventRequest) -> None:
    """422 for an unknown event or engineer, 403 for a role that may not send it here."""
    roles = EVENT_ROLES.get(body.event)
    if roles is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown event; one of {', '.join(EVENT_ROLES)}",
        )
    if who.role not in roles or (who.role is Role.ENGINEER and current.assignee != who.subject):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not {body.event} this")
    if body.event == "dispatch" and store.engineer(body.engineer_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"engineer {body.engineer_id!r} not found"
        )


@router.post("/{ticket_id}/events")
def ticket_event(
    who: CallerDep, store: StoreDep, now: NowDep, ticket_id: Id, body: EventRequest
) -> TicketView:
    """Apply one lifecycle event (409 if the ticket's state does not allow it; audited)."""
    _may_send(store, who, visible_ticket(store, who, ticket_id), body)
    try:
        moved = desk.apply(store, ticket_id, build_event(body), actor(who), now)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return ticket_for(who, moved)
