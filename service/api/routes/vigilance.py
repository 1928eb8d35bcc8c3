"""Suspected patient harm: flag a ticket, and the vigilance report drafted from it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator

from infra.time_us import us_from_datetime
from service.api.deps import AdminDep, Id, NowDep, StaffDep, StoreDep
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, decode_cursor, page
from service.api.requests import In
from service.api.schemas import Principal
from service.api.scope import actor, not_found, visible_ticket
from service.api.text import Note
from service.store import ServiceStore
from service.vigilance import HarmFlag, VigilanceDraft, draft, render_html

router = APIRouter(tags=["vigilance"])


def _described(value: str) -> str:
    if not value.strip():
        raise ValueError("description must say what harm is suspected")
    return value


class HarmIn(In):
    """What was observed: the harm suspected and how the device may be involved."""

    description: Annotated[Note, AfterValidator(_described)]


@router.post("/tickets/{ticket_id}/harm", status_code=status.HTTP_201_CREATED)
def flag_harm(who: StaffDep, store: StoreDep, now: NowDep, ticket_id: Id, body: HarmIn) -> HarmFlag:
    """Flag "patient harm suspected" (once per ticket: 409 after); audited, starts the draft."""
    visible_ticket(store, who, ticket_id)
    flag = HarmFlag(
        ticket_id=ticket_id, flagged_at=now, flagged_by=actor(who), description=body.description
    )
    with store.atomic():
        if not store.flag_harm(flag):
            kept = store.harm_flag(ticket_id)
            since = kept.flagged_at.isoformat() if kept else "before"
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"ticket {ticket_id} is flagged already (since {since})"
            )
        data = {"description": body.description}
        store.append_audit(now, actor(who), "harm_suspected", ticket_id, data)
    return flag


def visible_draft(
    store: ServiceStore, who: Principal, ticket_id: str, now_: datetime
) -> VigilanceDraft:
    """The draft report of a flagged ticket the caller may see; 404 otherwise (the console's
    vigilance list uses it too)."""
    ticket = visible_ticket(store, who, ticket_id)
    flag = store.harm_flag(ticket_id)
    device = store.device(ticket.device_id)
    site = store.site(device.site_id) if device else None
    if flag is None or device is None or site is None:
        raise not_found()
    return draft(ticket, device, site, flag, store.udi(device.id), now_)


@router.get("/tickets/{ticket_id}/vigilance")
def vigilance_json(who: StaffDep, store: StoreDep, now: NowDep, ticket_id: Id) -> VigilanceDraft:
    """The draft incident report of a flagged ticket, as JSON (404 when not flagged)."""
    return visible_draft(store, who, ticket_id, now)


@router.get("/tickets/{ticket_id}/vigilance.html", response_class=HTMLResponse)
def vigilance_html(who: StaffDep, store: StoreDep, now: NowDep, ticket_id: Id) -> str:
    """The same draft as a self-contained HTML page."""
    return render_html(visible_draft(store, who, ticket_id, now))


@router.get("/vigilance")
def harm_flags(
    who: AdminDep,
    store: StoreDep,
    request: Request,
    response: Response,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> list[HarmFlag]:
    """Every ticket flagged "patient harm suspected", oldest first; a page."""
    after = decode_cursor(cursor, "flagged", (int, str))
    position = (int(after[0]), str(after[1])) if after else None
    found = store.harm_flags(limit + 1, position)
    rows = [(f, (us_from_datetime(f.flagged_at), f.ticket_id)) for f in found]
    return page(rows, limit, "flagged", request, response)
