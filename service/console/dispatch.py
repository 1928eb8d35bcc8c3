"""The dispatcher's screens (admins): the live SLA board, engineer load, manual dispatch.

The board is one SQL page of open tickets, soonest deadline first, refreshed through the live
hub when an alert becomes a ticket or a ticket changes. Manual dispatch shows what the
auto-dispatcher would choose and why, and applies ``Dispatch`` through ``desk.apply`` with the
page's version, like every other ticket change. The installed-base, KPI and audit screens
(``admin``) are mounted here too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service import desk
from service.api.deps import Id, NowDep, SlaDep, StoreDep
from service.api.schemas import Role
from service.api.scope import actor, not_found, visible_ticket
from service.api.text import ID_PATTERN
from service.concurrency import ConcurrentUpdate
from service.console import admin
from service.console.deps import session_in
from service.console.dispatch_board import (
    BoardFilter,
    board,
    engineer_loads,
    site_zone,
    suggest,
)
from service.console.i18n import N_, gettext
from service.console.nav import NavItem
from service.console.render import is_fragment, page
from service.console.session import Session
from service.dispatch import Assignment
from service.lifecycle import Dispatch, TransitionError
from service.model import Ticket, Tier
from service.sla import SlaConfig
from service.store import ServiceStore

router = APIRouter()
router.include_router(admin.router)
_ADMIN = frozenset({Role.ADMIN})
NAV = (
    NavItem("/console/dispatch", N_("SLA board"), _ADMIN, order=30),
    NavItem("/console/load", N_("Engineer load"), _ADMIN, order=31),
    *admin.NAV,
)

AdminSession = Annotated[Session, Depends(session_in(Role.ADMIN))]
Field = Annotated[str, Query(max_length=128)]
_ID = re.compile(ID_PATTERN)
MAX_REASON = 2000


def _filter(tier: str, site: str, assignee: str, breached: str) -> BoardFilter:
    """The board's filter from its form, where an empty field means "any"; 422 when bad."""
    try:
        chosen = Tier(tier) if tier else None
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "tier must be urgent or general"
        ) from None
    return BoardFilter(
        tier=chosen,
        site_id=admin.optional_id(site, "site"),
        assignee=admin.optional_id(assignee, "assignee"),
        breached_only=breached.strip().lower() in ("true", "on", "1"),
    )


def board_query(where: BoardFilter, cursor: str | None = None) -> str:
    """The query string of the board ``where`` shows (only the fields set)."""
    params = {
        "tier": where.tier.value if where.tier else "",
        "site": where.site_id or "",
        "assignee": where.assignee or "",
        "breached": "true" if where.breached_only else "",
        "cursor": cursor or "",
    }
    return urlencode({k: v for k, v in params.items() if v})


def _board_filter(
    tier: Field = "", site: Field = "", assignee: Field = "", breached: Field = ""
) -> BoardFilter:
    """The board's filter from its query (a dependency of both board routes)."""
    return _filter(tier, site, assignee, breached)


FilterDep = Annotated[BoardFilter, Depends(_board_filter)]
CursorQuery = Annotated[str | None, Query(max_length=512)]


def _board_values(
    session: Session,
    store: ServiceStore,
    sla: SlaConfig,
    now: datetime,
    where: BoardFilter,
    cursor: str | None,
) -> dict[str, Any]:
    """What the board page and its live rows show: one SQL page of the filtered board."""
    found = board(store, admin.scope(session), sla, now, where, cursor)
    return {
        "board": found,
        "where": where,
        "query": board_query(where, cursor),
        "next_query": board_query(where, found.next_cursor) if found.next_cursor else "",
        "tiers": list(Tier),
    }


@router.get("/console/dispatch", response_class=HTMLResponse)
@router.get("/console/dispatch/rows", response_class=HTMLResponse)
def sla_board(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    where: FilterDep,
    cursor: CursorQuery = None,
) -> HTMLResponse:
    """The SLA board page, or at ``/rows`` its rows alone (what the live feed swaps in)."""
    values = _board_values(session, store, sla, now, where, cursor)
    template = "dispatch_rows.html" if is_fragment(request) else "dispatch_board.html"
    return page(request, template, values, session)


@router.get("/console/load", response_class=HTMLResponse)
def load(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    region: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    """Each engineer's held tickets against their capacity (counted in SQL)."""
    loads = engineer_loads(store, region or None)
    values = {"loads": loads, "region": region or ""}
    return page(request, "dispatch_load.html", values, session)


def _dispatch_page(
    request: Request,
    session: Session,
    store: ServiceStore,
    sla: SlaConfig,
    ticket: Ticket,
    *,
    error: str = "",
    done: bool = False,
    chosen: str = "",
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    device = store.device(ticket.device_id)
    site = store.site(device.site_id) if device else None
    suggestion = suggest(store, ticket, device, site) if device and site else None
    suggested = ""
    if suggestion is not None and isinstance(suggestion.outcome, Assignment):
        suggested = suggestion.outcome.engineer_id
    values = {
        "suggested": suggested,
        "ticket": ticket,
        "device": device,
        "site": site,
        "suggestion": suggestion,
        "error": error,
        "done": done,
        "chosen": chosen,
    }
    zone = site_zone(sla, site.id if site else None)
    return page(
        request, "dispatch_ticket.html", values, session, zone=zone, status_code=status_code
    )


@router.get("/console/dispatch/tickets/{ticket_id}", response_class=HTMLResponse)
def dispatch_form(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    sla: SlaDep,
    ticket_id: Id,
    done: bool = False,
) -> HTMLResponse:
    """Manual dispatch of one ticket: the explained suggestion and every engineer weighed."""
    ticket = visible_ticket(store, session.who, ticket_id)
    return _dispatch_page(request, session, store, sla, ticket, done=done)


@router.post("/console/dispatch/tickets/{ticket_id}", response_class=HTMLResponse)
async def dispatch_ticket(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    ticket_id: Id,
) -> Response:
    """Dispatch (or re-dispatch) to the chosen engineer; 4xx with why when refused."""
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_dispatch, request, session, store, sla, now, ticket_id, form)


def _refusal(form: dict[str, str], store: ServiceStore) -> tuple[int, str] | None:
    """Why the form cannot be applied (status, message), or None."""
    engineer_id = form.get("engineer_id", "").strip()
    if not engineer_id:
        return 422, gettext("choose an engineer")
    if not _ID.match(engineer_id) or store.engineer(engineer_id) is None:
        return 422, gettext("engineer %(id)s not found", id=engineer_id[:128])
    if len(form.get("reason", "")) > MAX_REASON:
        return 422, gettext("the reason is longer than %(limit)s characters", limit=MAX_REASON)
    if not form.get("version", "").isdigit():
        return 422, gettext("the form is missing the ticket's version; reload the page")
    return None


def _dispatch(
    request: Request,
    session: Session,
    store: ServiceStore,
    sla: SlaConfig,
    now: datetime,
    ticket_id: str,
    form: dict[str, str],
) -> Response:
    ticket = visible_ticket(store, session.who, ticket_id)
    chosen = form.get("engineer_id", "").strip()[:128]
    refused = _refusal(form, store)
    if refused is None:
        note = " ".join(form.get("reason", "").split())
        reason = f"manual dispatch by {actor(session.who)}" + (f": {note}" if note else "")
        try:
            event = Dispatch(chosen, reason)
            desk.apply(store, ticket_id, event, actor(session.who), now, int(form["version"]))
        except ConcurrentUpdate:
            refused = (
                409,
                gettext(
                    "someone else changed this ticket since you opened it; "
                    "the page now shows its current state — check it and try again"
                ),
            )
        except TransitionError as exc:
            refused = 409, gettext("not allowed now: %(reason)s", reason=str(exc))
        except desk.NotFound:
            raise not_found() from None
    if refused is not None:
        current = store.ticket(ticket_id) or ticket
        code, message = refused
        return _dispatch_page(
            request, session, store, sla, current, error=message, chosen=chosen, status_code=code
        )
    target = f"/console/dispatch/tickets/{ticket_id}?done=true"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
