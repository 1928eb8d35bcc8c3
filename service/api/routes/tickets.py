"""Tickets in the caller's scope: list, read, open, and move them through their lifecycle."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

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
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, Offset, decode_cursor, page
from service.api.requests import EventRequest, NewTicket
from service.api.schemas import PatientStateChange, Principal, Role
from service.api.scope import actor, scope_of, visible_device, visible_ticket
from service.api.text import ID_PATTERN, ApiInstant
from service.api.views import TicketView, history_for, ticket_for
from service.lifecycle import TransitionError
from service.model import OPEN_STATES, StateChange, Ticket, TicketKind, TicketState, Tier
from service.notifications import NotifyConfig, ticket_notifications
from service.quiet_hours import notify_items
from service.store import ServiceStore
from service.store.queries import TicketQuery, TicketSort

router = APIRouter(prefix="/tickets", tags=["tickets"])

REDISPATCH_ON_RESOLVE = 50  # undispatched tickets offered again when a resolve frees someone

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("")
def tickets(
    who: CallerDep,
    store: StoreDep,
    request: Request,
    response: Response,
    state: Annotated[list[TicketState] | None, Query(max_length=len(TicketState))] = None,
    device_id: IdFilter = None,
    site_id: IdFilter = None,
    tier: Tier | None = None,
    assignee: IdFilter = None,
    due_before: Annotated[ApiInstant | None, Query()] = None,
    updated_since: Annotated[ApiInstant | None, Query()] = None,
    sort: TicketSort = "id",
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> list[TicketView]:
    """Tickets of the caller's devices matching every filter given, sorted, one page.

    ``state`` may repeat (any of them); ``due_before`` selects tickets with a running SLA
    clock due before then; ``sort`` is ``id`` (default), ``opened``, ``updated`` (``-`` first:
    newest first) or ``due``. More pages: follow the ``Link: rel="next"`` header.
    """
    shape: tuple[type, ...] = (str,) if sort == "id" else (int, str)
    query = TicketQuery(
        scope=scope_of(who),
        states=None if state is None else tuple(state),
        device_id=device_id,
        site_id=site_id,
        tier=tier,
        assignee=assignee,
        due_before=due_before,
        updated_since=updated_since,
        sort=sort,
        after=decode_cursor(cursor, sort, shape),
        limit=limit + 1,
        offset=offset,
    )
    found = page(store.ticket_page(query), limit, sort, request, response)
    return [ticket_for(who, t) for t in found]


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
    # One transaction holding the device's lock, so two clicks at once (even on two API
    # processes) cannot both find no ticket and both open one.
    with store.atomic():
        store.lock_device(body.device_id)
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
    if body.event == "resolve":
        _freed_capacity(store, now)
    return ticket_for(who, moved)


def _freed_capacity(store: ServiceStore, now: datetime) -> None:
    """A resolve frees an engineer: offer the oldest undispatched tickets again right away.

    Their engineers are told over MQTT (the outbox); webhooks need the worker's notify
    configuration, so the worker's next tick is what reaches webhook subscribers otherwise.
    """
    dispatched = desk.dispatch_waiting(store, now, limit=REDISPATCH_ON_RESOLVE)
    notes = [
        note
        for ticket in dispatched
        for note in ticket_notifications(
            ticket, store.device(ticket.device_id), "ticket.dispatched", now, store.sla
        )
    ]
    if notes:
        store.enqueue_notifications(notify_items(store, notes, NotifyConfig(), now))
