"""The engineer's screen (phone first): my tickets by time left, and one ticket's actions.

An engineer sees the tickets assigned to them that still need them (dispatched … resolved),
the one whose SLA runs out first on top, each with a live countdown. Actions post plain forms
(no script needed but the signature pad's) and go through ``engineer_actions``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.api.command_requests import CommandAsk, request_command
from service.api.deps import Id, NowDep, SlaDep, StoreDep
from service.api.schemas import Principal, Role
from service.api.scope import visible_ticket
from service.api.text import ID_PATTERN
from service.console import engineer_signature, i18n
from service.console.assets import STATIC_DIR
from service.console.deps import session_in
from service.console.dispatch_board import BoardRow, board_row, site_zone
from service.console.engineer_actions import ACTIONS, BY_EVENT, ActionRefused, act, may_act
from service.console.engineer_commands import remote_diagnosis
from service.console.i18n import N_
from service.console.nav import NavItem
from service.console.render import is_fragment, page
from service.console.session import Session
from service.lifecycle import allowed_events
from service.model import ASSIGNED_STATES, Ticket, TicketState
from service.sla import SlaConfig
from service.store import ServiceStore
from service.store.queries import TicketQuery

router = APIRouter(prefix="/console/engineer")
SERVICE_WORKER = STATIC_DIR / "engineer_sw.js"
NAV = (
    NavItem(
        "/console/engineer", N_("My tickets"), frozenset({Role.ENGINEER, Role.ADMIN}), order=20
    ),
)

FieldSession = Annotated[Session, Depends(session_in(Role.ENGINEER, Role.ADMIN))]
_ID = re.compile(ID_PATTERN)
MINE = 100  # tickets per list; an engineer holds a handful, this only bounds a runaway
_MY_STATES = (*sorted(ASSIGNED_STATES), TicketState.RESOLVED)
_STOPPED = (TicketState.WAITING_FOR_CUSTOMER, TicketState.RESOLVED)


def my_tickets(
    store: ServiceStore, engineer_id: str, now: datetime, sla: SlaConfig
) -> tuple[list[BoardRow], bool]:
    """The engineer's tickets, soonest SLA deadline first, then paused and resolved ones;
    and whether more were left out. Both lists are SQL pages (by deadline, then by id)."""
    running = TicketQuery(
        states=_MY_STATES, assignee=engineer_id, sort="due", limit=MINE + 1
    )  # only tickets with a running clock have a deadline to sort by
    stopped = TicketQuery(states=_STOPPED, assignee=engineer_id, limit=MINE + 1)
    first = [t for t, _ in store.ticket_page(running)]
    rest = [t for t, _ in store.ticket_page(stopped)]
    more = len(first) > MINE or len(rest) > MINE
    rows = [board_row(t, now, sla) for t in first[:MINE]]
    rows += [board_row(t, now, sla) for t in rest[:MINE]]
    return rows, more


def _whose(who: Principal, engineer: str) -> str:
    """Whose tickets to list: the engineer's own; an admin's choice (422 for a bad id)."""
    chosen = engineer.strip() if who.role is Role.ADMIN else ""
    if chosen and not _ID.match(chosen):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "engineer is not a valid id")
    return chosen or (who.subject or "" if who.role is Role.ENGINEER else "")


def _cards(
    store: ServiceStore, who: Principal, engineer: str, now: datetime, sla: SlaConfig
) -> dict[str, object]:
    """What the list and its live cards show: whose tickets, and one page of them."""
    engineer_id = _whose(who, engineer)
    rows, more = my_tickets(store, engineer_id, now, sla)
    return {"rows": rows, "more": more, "engineer_id": engineer_id}


@router.get("", response_class=HTMLResponse)
@router.get("/rows", response_class=HTMLResponse)
def tickets(
    request: Request,
    session: FieldSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    engineer: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    """My tickets (an admin may look at any engineer's with ``?engineer=``), or at ``/rows``
    the cards alone (what the live feed swaps in when a ticket changes)."""
    values = _cards(store, session.who, engineer, now, sla) | {"now": now}
    template = "engineer_cards.html" if is_fragment(request) else "engineer_tickets.html"
    return page(request, template, values, session)


@router.get("/sw.js", include_in_schema=False)
def service_worker() -> FileResponse:
    """The script that keeps the engineer's pages readable offline (scope: these pages only)."""
    headers = {
        "Service-Worker-Allowed": "/console/engineer",
        "Cache-Control": "no-cache",  # a new version is picked up at the next visit
        "X-Content-Type-Options": "nosniff",
    }
    return FileResponse(SERVICE_WORKER, media_type="text/javascript", headers=headers)


@router.get("/offline", response_class=HTMLResponse)
def offline(request: Request, session: FieldSession, now: NowDep) -> HTMLResponse:
    """What the phone shows offline for a page it never saved (kept by the service worker)."""
    return page(request, "engineer_offline.html", {"now": now}, session)


def actions_for(who: Principal, ticket: Ticket) -> list[tuple[str, str]]:
    """(action, label) of what ``who`` may do to ``ticket`` in its state, in button order."""
    try:
        may_act(who, ticket)
    except ActionRefused:
        return []
    allowed = {BY_EVENT[e] for e in allowed_events(ticket.state) if e in BY_EVENT}
    return [(name, label) for name, label in ACTIONS.items() if name in allowed]


def _ticket_page(
    request: Request,
    session: Session,
    store: ServiceStore,
    ticket: Ticket,
    now: datetime,
    sla: SlaConfig,
    *,
    error: str = "",
    done: str = "",
    form: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    device = store.device(ticket.device_id)
    values = {
        **remote_diagnosis(store, session.who, ticket, device),
        "row": board_row(ticket, now, sla),
        "ticket": ticket,
        "device": device,
        # Parts held for this job at dispatch (the likely fix's kit), and where to collect them.
        "reservations": store.reservations(ticket.id),
        "actions": actions_for(session.who, ticket),
        "error": error,
        "done": ACTIONS.get(done, "") or (N_("Command sent") if done == "command" else ""),
        "form": form or {},
        "typed_statement": engineer_signature.TYPED_STATEMENT,
        "now": now,
    }
    zone = site_zone(sla, device.site_id if device else None)
    return page(
        request, "engineer_ticket.html", values, session, zone=zone, status_code=status_code
    )


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(
    request: Request,
    session: FieldSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    ticket_id: Id,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """One ticket: its clocks, device, history and the actions its state allows."""
    ticket = visible_ticket(store, session.who, ticket_id)
    shown = done if done in ACTIONS or done == "command" else ""
    return _ticket_page(request, session, store, ticket, now, sla, done=shown)


@router.post("/commands/{ticket_id}", response_class=HTMLResponse)
async def send_command(
    request: Request,
    session: FieldSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    ticket_id: Id,
) -> Response:
    """Send the form's command with its default arguments; back to the ticket (303), or the
    ticket with why not (4xx)."""
    command = (await request.form()).get("command")
    ask = CommandAsk(command[:64] if isinstance(command, str) else "", {})

    def work() -> Response:
        try:
            request_command(store, session.who, ticket_id, ask, now)
        except HTTPException as refused:
            ticket = visible_ticket(store, session.who, ticket_id)
            error, code = str(refused.detail), refused.status_code
            return _ticket_page(
                request, session, store, ticket, now, sla, error=error, status_code=code
            )
        target = f"/console/engineer/tickets/{ticket_id}?done=command"
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)

    return await run_in_threadpool(work)  # store calls block: off the event loop


@router.post("/tickets/{ticket_id}/{action}", response_class=HTMLResponse)
async def ticket_action(
    request: Request,
    session: FieldSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    ticket_id: Id,
    action: Annotated[str, Path(max_length=32)],
) -> Response:
    """Apply one action; back to the ticket (303), or the ticket with why not (4xx)."""
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    # The store calls block: off the event loop, like FastAPI's sync routes.
    return await run_in_threadpool(
        _apply, request, session, store, sla, now, ticket_id, action, form
    )


def _apply(
    request: Request,
    session: Session,
    store: ServiceStore,
    sla: SlaConfig,
    now: datetime,
    ticket_id: str,
    action: str,
    form: dict[str, str],
) -> Response:
    """The blocking part of an action: store reads and the desk's write."""
    ticket = visible_ticket(store, session.who, ticket_id)
    try:
        language = i18n.chosen(
            request.cookies.get(i18n.COOKIE), request.headers.get("accept-language")
        )
        act(store, session.who, ticket, action, form, now, language)
    except ActionRefused as refused:
        current = store.ticket(ticket_id) or ticket
        kept = {k: v for k, v in form.items() if k in ("note", "fault", "resolution", "parts")}
        return _ticket_page(
            request,
            session,
            store,
            current,
            now,
            sla,
            error=refused.text(),
            form=kept,
            status_code=refused.status,
        )
    target = f"/console/engineer/tickets/{ticket_id}?done={action}"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
