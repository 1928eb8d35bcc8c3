"""The ward board: every patch of a site (or ward) with its live status; acknowledge alerts.

Staff only (admins, engineers, a hospital for its own site). The page polls nothing: it
listens to the live feed and re-fetches its rows fragment when an alert, ticket or
acknowledgement of its site arrives.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from service.api.deps import ContextDep, NowDep, ReadingsDep, StoreDep
from service.api.schemas import Role
from service.api.scope import actor, scope_of, sees_everything, visible_device
from service.api.text import ID_PATTERN
from service.console.board import BoardPage, board_page, scoped_query
from service.console.deps import ConsoleDep, StaffSession
from service.console.i18n import N_
from service.console.live import Change
from service.console.nav import NavItem
from service.console.render import page, render_text
from service.console.session import Session
from service.model import Site
from service.store import ServiceStore

router = APIRouter(prefix="/console/ward")

NAV = (
    NavItem(
        "/console/ward",
        N_("Ward board"),
        frozenset({Role.HOSPITAL, Role.ADMIN, Role.ENGINEER}),
        order=10,
    ),
)

IdParam = Annotated[str | None, Query(pattern=ID_PATTERN)]
WardParam = Annotated[str | None, Query(max_length=128)]
MAX_NOTE = 500


def _site(store: ServiceStore, session: Session, site_id: str | None) -> tuple[Site, list[Site]]:
    """The site shown and the sites the caller may pick from (a hospital: only its own)."""
    who = session.who
    if not sees_everything(who):
        mine = store.site(who.subject or "")
        if mine is None or (site_id is not None and site_id != mine.id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return mine, [mine]
    sites = store.sites()
    if not sites:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no site is installed yet")
    chosen = next((s for s in sites if s.id == site_id), None) if site_id else sites[0]
    if chosen is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return chosen, sites


def _zone(context: ContextDep, site_id: str) -> ZoneInfo:
    calendar = context.sla.site_calendar(site_id)
    return calendar.zone if calendar is not None else ZoneInfo("UTC")


def _board(
    context: ContextDep,
    console: ConsoleDep,
    readings: ReadingsDep,
    session: Session,
    site: Site,
    ward: str | None,
    after: str | None,
) -> BoardPage:
    query = scoped_query(scope_of(session.who), site.id, ward, after)
    return board_page(context.store, readings, console.acks, query, context.clock())


@router.get("", include_in_schema=False)
def ward_board(
    request: Request,
    session: StaffSession,
    context: ContextDep,
    console: ConsoleDep,
    readings: ReadingsDep,
    site: IdParam = None,
    ward: WardParam = None,
    after: IdParam = None,
) -> Response:
    """The board page."""
    shown, sites = _site(context.store, session, site)
    board = _board(context, console, readings, session, shown, ward, after)
    values = {
        "site": shown,
        "sites": sites,
        "ward": ward or "",
        "after": after,
        "board": board,
        "oob": False,
    }
    return page(request, "ward.html", values, session, zone=_zone(context, shown.id))


@router.get("/rows", include_in_schema=False)
def ward_rows(
    request: Request,
    session: StaffSession,
    context: ContextDep,
    console: ConsoleDep,
    readings: ReadingsDep,
    site: IdParam = None,
    ward: WardParam = None,
    after: IdParam = None,
) -> Response:
    """The board's rows fragment (htmx swaps it in when the live feed says something changed)."""
    shown, _ = _site(context.store, session, site)
    board = _board(context, console, readings, session, shown, ward, after)
    values = {"site": shown, "ward": ward or "", "after": after, "board": board, "oob": True}
    html = render_text(request, "_ward_rows.html", values, session, _zone(context, shown.id))
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})


@router.post("/ack", include_in_schema=False)
def acknowledge(
    request: Request,
    session: StaffSession,
    store: StoreDep,
    readings: ReadingsDep,
    console: ConsoleDep,
    now: NowDep,
    device_id: Annotated[str, Form(pattern=ID_PATTERN)],
    rule_id: Annotated[str, Form(min_length=1, max_length=128)],
    at_us: Annotated[int, Form(gt=0)],
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
    ward: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Acknowledge one active alert of a device in the caller's scope, with a note (audited)."""
    device = visible_device(store, session.who, device_id)
    event = next(
        (
            a
            for a in readings.active_alerts([device.id])
            if a.rule_id == rule_id and a.at_us == at_us
        ),
        None,
    )
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active alert")
    console.acks.acknowledge(event, actor(session.who), note.strip(), now)
    console.hub.publish(Change("ack", frozenset({device.site_id}), frozenset({device.id})))
    back = "/console/ward?" + urlencode(
        {"site": device.site_id, **({"ward": ward} if ward else {})}
    )
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Trigger": "acknowledged"})
    return RedirectResponse(back, status.HTTP_303_SEE_OTHER)
