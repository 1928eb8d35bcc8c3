"""Spare parts: stock per warehouse (admins set it, staff read it) and what a ticket holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from service.api.deps import AdminDep, Id, NowDep, StaffDep, StoreDep
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, decode_cursor, page
from service.api.requests import In
from service.api.scope import actor, visible_ticket
from service.api.text import ID_PATTERN
from service.parts import Reservation, Stock
from service.store.queries import StockQuery

router = APIRouter(tags=["parts"])

Count = Annotated[int, Field(ge=0, le=1_000_000)]


class StockIn(In):
    """What a warehouse holds of one part, and the level at which the team is told it is low."""

    on_hand: Count
    low_at: Count = 0


@router.put("/stock/{warehouse}/{part}")
def put_stock(
    who: AdminDep, store: StoreDep, now: NowDep, warehouse: Id, part: Id, body: StockIn
) -> Stock:
    """Set a part's stock in a warehouse (a count or a delivery); reservations are kept."""
    with store.atomic():
        stock = store.put_stock(warehouse, part, body.on_hand, body.low_at)
        data = {"on_hand": body.on_hand, "low_at": body.low_at}
        store.append_audit(now, actor(who), "stock_set", f"{warehouse}/{part}", data)
    return stock


@router.get("/stock")
def stock(
    who: StaffDep,
    store: StoreDep,
    request: Request,
    response: Response,
    warehouse: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    low: bool = False,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> list[Stock]:
    """Stock rows by warehouse and part (only the low ones with ``low=true``); a page."""
    after = decode_cursor(cursor, "stock", (str, str))
    query = StockQuery(
        warehouse=warehouse,
        low_only=low,
        after=(str(after[0]), str(after[1])) if after else None,
        limit=limit + 1,
    )
    rows = [(s, (s.warehouse, s.part)) for s in store.stock_page(query)]
    return page(rows, limit, "stock", request, response)


@router.get("/tickets/{ticket_id}/parts")
def ticket_parts(who: StaffDep, store: StoreDep, ticket_id: Id) -> list[Reservation]:
    """The parts held for one ticket (reserved at dispatch, until it is resolved)."""
    return store.reservations(visible_ticket(store, who, ticket_id).id)
