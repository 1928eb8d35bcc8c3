"""Reopening a ticket whose fault came back: the customer (or an admin) says it is broken again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import AfterValidator

from service import desk
from service.api.deps import Id, NowDep, OpenerDep, StoreDep
from service.api.requests import In
from service.api.scope import actor, visible_ticket
from service.api.text import Note
from service.api.views import TicketView, ticket_for
from service.lifecycle import TransitionError

router = APIRouter(prefix="/tickets", tags=["tickets"])


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("reason must say why the ticket is reopened")
    return value


class ReopenRequest(In):
    """Why the ticket is reopened (the fault came back, the fix did not hold …)."""

    reason: Annotated[Note, AfterValidator(_not_blank)]


@router.post("/{ticket_id}/reopen")
def reopen_ticket(
    who: OpenerDep, store: StoreDep, now: NowDep, ticket_id: Id, body: ReopenRequest
) -> TicketView:
    """Reopen a resolved, signed-off, followed-up or closed ticket and dispatch it again.

    409 while the ticket is still open (nothing to reopen); audited as ``reopen``. Its SLA
    clocks start again at the reopening (docs/service.md, "Reopening").
    """
    visible_ticket(store, who, ticket_id)
    try:
        moved = desk.reopen(store, ticket_id, body.reason, actor(who), now)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return ticket_for(who, moved)
