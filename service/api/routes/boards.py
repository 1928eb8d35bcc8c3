"""Console boards, one call each: the SLA board of open tickets, and a site's (or ward's) devices
with their latest readings, open tickets and active alerts.

Each reads only the rows it shows (indexed by state and site), and the big site board is
serialised once, straight to JSON.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic_core import to_json

from infra.time_us import us_from_datetime
from service.api.context import Telemetry
from service.api.deps import HeavyDep, Id, NowDep, ReadingsDep, SlaDep, StaffDep, StoreDep
from service.api.pages import Cursor, decode_cursor, page
from service.api.routes.kpis import clock_out
from service.api.schemas import BoardTicket, OpenTicketBrief, SiteBoard
from service.api.scope import scope_of, visible_site
from service.api.text import ID_PATTERN, ApiInstant
from service.model import OPEN_STATES, Site, Ticket, Tier
from service.sla import SlaConfig, sla_status
from service.store import ServiceStore
from service.store.queries import DeviceQuery, DeviceRow, TicketQuery

router = APIRouter(prefix="/board", tags=["boards"])

BOARD_PAGE = 1000
SITE_PAGE = 10_000
MAX_SITE_PAGE = 20_000
LATEST_WINDOW = timedelta(days=7)  # readings older than this are not "latest" on a board

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
_Json = dict[str, Any]  # a part of a response body, as its model serialises it


@router.get("/tickets")
def ticket_board(
    who: StaffDep,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    request: Request,
    response: Response,
    site_id: IdFilter = None,
    tier: Tier | None = None,
    assignee: IdFilter = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=BOARD_PAGE)] = BOARD_PAGE,
) -> list[BoardTicket]:
    """Open tickets in the caller's scope (by id) with both SLA clocks as of now; one page."""
    query = TicketQuery(
        scope=scope_of(who),
        states=tuple(sorted(OPEN_STATES)),
        site_id=site_id,
        tier=tier,
        assignee=assignee,
        after=decode_cursor(cursor, "id", (str,)),
        limit=limit + 1,
    )
    found = page(store.ticket_page(query), limit, "id", request, response)
    return [_board_ticket(t, now, sla) for t in found]


def _board_ticket(ticket: Ticket, now: datetime, sla: SlaConfig) -> BoardTicket:
    status_ = sla_status(ticket, now, sla)
    # Built without validation: every value is already typed (a board has a thousand).
    return BoardTicket.model_construct(
        id=ticket.id,
        device_id=ticket.device_id,
        kind=ticket.kind,
        tier=ticket.tier,
        state=ticket.state,
        assignee=ticket.assignee,
        opened_at=ticket.opened_at,
        title=ticket.title,
        breached=status_.breached,
        respond=clock_out(status_.respond),
        resolve=clock_out(status_.resolve),
    )


@router.get("/sites/{site_id}", response_model=SiteBoard)
def site_board(
    who: StaffDep,
    store: StoreDep,
    readings: ReadingsDep,
    now: NowDep,
    heavy: HeavyDep,
    request: Request,
    response: Response,
    site_id: Id,
    ward: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[ApiInstant | None, Query()] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SITE_PAGE)] = SITE_PAGE,
) -> Response:
    """A site's (or one ward's) devices, by id, each with its latest reading per metric (taken
    since ``since``, default a week ago), open tickets and active alerts; one page."""
    site = visible_site(store, who, site_id)
    after = decode_cursor(cursor, "id", (str,))
    query = DeviceQuery(
        site_id=site_id, ward=ward, after=None if after is None else after[0], limit=limit + 1
    )
    with heavy:  # a few at a time: each holds tens of thousands of rows
        found = [(d, (d.id,)) for d in store.device_rows(query)]
        devices = page(found, limit, "id", request, response)
        return _site_board(store, readings, site, devices, since or now - LATEST_WINDOW, response)


def _site_board(
    store: ServiceStore,
    readings: Telemetry,
    site: Site,
    devices: list[DeviceRow],
    since: datetime,
    response: Response,
) -> Response:
    """The board's JSON: each device with its latest readings, open tickets, active alerts and
    wound baselines.

    Tens of thousands of rows: each is a plain dict in ``SiteBoard``'s field order (the values
    are typed already, straight from the stores) and the whole is serialised once, in Rust; a
    model per row cost more than the queries.
    """
    ids = [d.id for d in devices]
    latest: dict[str, dict[str, _Json]] = defaultdict(dict)
    for r in readings.latest(ids, us_from_datetime(since)):
        latest[r.device_id][r.metric] = {
            "value": r.value,
            "unit": r.unit,
            "ts_us": r.ts_us,
            "seq": r.seq,
        }
    alerts: dict[str, list[_Json]] = defaultdict(list)
    for alert in readings.active_alerts(ids):
        alerts[alert.device_id].append(alert.model_dump(mode="json"))
    baselines: dict[str, list[_Json]] = defaultdict(list)
    for b in readings.baselines(ids):
        baselines[b.device_id].append(
            {
                "rule_id": b.rule_id,
                "metric": b.metric,
                "baseline": b.baseline,
                "current": b.current,
                "delta": b.delta,
                "at_us": b.at_us,
            }
        )
    tickets = _open_tickets(store, site.id)
    board = {
        "site": site.model_dump(mode="json"),
        "devices": [
            {
                "device_id": d.id,
                "kind": d.kind,
                "model": d.model,
                "ward": d.ward or "",
                "room": d.room or "",
                "bed": d.bed or "",
                "patient": d.patient,
                "latest": latest.get(d.id, {}),
                "tickets": tickets.get(d.id, []),
                "alerts": alerts.get(d.id, []),
                "baselines": baselines.get(d.id, []),
            }
            for d in devices
        ],
    }
    # NaN and infinities as null, as the model would serialise them (JSON has neither).
    body = to_json(board, inf_nan_mode="null")
    return Response(body, media_type="application/json", headers=response.headers)


def _open_tickets(store: ServiceStore, site_id: str) -> dict[str, list[_Json]]:
    """The site's open tickets by device, as ``OpenTicketBrief`` serialises them."""
    query = TicketQuery(site_id=site_id, states=tuple(sorted(OPEN_STATES)), limit=None)
    found: dict[str, list[_Json]] = defaultdict(list)
    for t, _ in store.ticket_page(query):
        found[t.device_id].append(
            OpenTicketBrief(
                id=t.id,
                kind=t.kind,
                tier=t.tier,
                state=t.state,
                assignee=t.assignee,
                opened_at=t.opened_at,
                title=t.title,
            ).model_dump(mode="json")
        )
    return found
