"""The dispatcher's data: the SLA board, each engineer's load, and an explained suggestion.

The board is one keyset page of open tickets sorted by their next SLA deadline, filtered in
SQL (``TicketQuery``); paused tickets (no running clock) are a short list of their own. Load is
counted by the store in SQL. The suggestion is ``dispatch.assign`` itself, the rule the
auto-dispatcher and the escalation use, so the console explains exactly what they would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from service.api.pages import decode_cursor, encode_cursor
from service.dispatch import Assignment, NoEngineer, assign
from service.model import OPEN_STATES, Device, Engineer, Site, Ticket, TicketState, Tier
from service.sla import SlaConfig, SlaStatus, sla_status
from service.store import ServiceStore
from service.store.queries import Scope, TicketQuery, TicketSort

BOARD_PAGE = 50
PAUSED_PAGE = 50
_SORT: TicketSort = "due"
_SHAPE = (int, str)


def site_zone(sla: SlaConfig, site_id: str | None) -> tzinfo:
    """The time zone a site's pages show times in: its business calendar's (UTC without one)."""
    calendar = sla.site_calendar(site_id) if site_id else None
    return calendar.zone if calendar is not None else UTC


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """What the dispatcher narrowed the board to."""

    tier: Tier | None = None
    site_id: str | None = None
    assignee: str | None = None
    breached_only: bool = False


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One open ticket with its SLA clocks at render time."""

    ticket: Ticket
    sla: SlaStatus
    remaining_s: float | None  # of the running clock due first; None when none runs
    deadline: datetime | None

    @property
    def escalated(self) -> bool:
        """Whether the ticket was ever escalated."""
        return bool(self.ticket.escalated_at)


@dataclass(frozen=True, slots=True)
class Board:
    """One page of the board, the paused tickets, and the cursor of the next page."""

    rows: list[BoardRow]
    paused: list[BoardRow]
    next_cursor: str | None


def board_row(ticket: Ticket, now: datetime, sla: SlaConfig) -> BoardRow:
    """``ticket`` with both clocks as of ``now``."""
    status = sla_status(ticket, now, sla)
    running = [c for c in (status.respond, status.resolve) if c.stopped_at is None and not c.paused]
    first = min(running, key=lambda c: c.remaining, default=None)
    return BoardRow(
        ticket=ticket,
        sla=status,
        remaining_s=first.remaining.total_seconds() if first else None,
        deadline=first.deadline if first else None,
    )


def board(
    store: ServiceStore,
    scope: Scope,
    sla: SlaConfig,
    now: datetime,
    where: BoardFilter,
    cursor: str | None,
    limit: int = BOARD_PAGE,
) -> Board:
    """One page of the SLA board: soonest deadline first (422 for a bad cursor)."""
    query = TicketQuery(
        scope=scope,
        states=tuple(sorted(OPEN_STATES)),
        site_id=where.site_id,
        tier=where.tier,
        assignee=where.assignee,
        due_before=now if where.breached_only else None,
        sort=_SORT,
        after=decode_cursor(cursor, _SORT, _SHAPE),
        limit=limit + 1,
    )
    found = store.ticket_page(query)
    more = encode_cursor(_SORT, found[limit - 1][1]) if len(found) > limit else None
    rows = [board_row(t, now, sla) for t, _ in found[:limit]]
    paused: list[BoardRow] = []
    if cursor is None and not where.breached_only:
        waiting = TicketQuery(
            scope=scope,
            states=(TicketState.WAITING_FOR_CUSTOMER,),
            site_id=where.site_id,
            tier=where.tier,
            assignee=where.assignee,
            limit=PAUSED_PAGE,
        )
        paused = [board_row(t, now, sla) for t, _ in store.ticket_page(waiting)]
    return Board(rows=rows, paused=paused, next_cursor=more)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An engineer as the dispatcher weighs them for one ticket."""

    engineer: Engineer
    load: int
    skilled: bool
    in_region: bool
    excluded: bool

    @property
    def has_room(self) -> bool:
        """Whether they hold fewer tickets than their capacity."""
        return self.load < self.engineer.capacity


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Who ``dispatch.assign`` would choose and why (or why nobody), and everyone weighed."""

    outcome: Assignment | NoEngineer
    candidates: list[Candidate]


def suggest(store: ServiceStore, ticket: Ticket, device: Device, site: Site) -> Suggestion:
    """The explained choice for ``ticket``: the region's engineers, load counted in SQL.

    Engineers who already held the ticket are excluded, as escalation excludes them, so a
    re-dispatch goes to someone new.
    """
    staff = store.engineers(region=site.region)
    if ticket.assignee and all(e.id != ticket.assignee for e in staff):
        held = store.engineer(ticket.assignee)
        staff += [held] if held is not None else []
    load = store.engineer_load([e.id for e in staff], ticket.id)
    exclude = {*ticket.previous_assignees, *([ticket.assignee] if ticket.assignee else [])}
    outcome = assign(device, site, staff, load, exclude=exclude)
    candidates = [
        Candidate(
            engineer=e,
            load=load.get(e.id, 0),
            skilled=device.family in e.skills,
            in_region=e.region == site.region,
            excluded=e.id in exclude,
        )
        for e in sorted(staff, key=lambda e: e.id)
    ]
    return Suggestion(outcome=outcome, candidates=candidates)


@dataclass(frozen=True, slots=True)
class EngineerLoad:
    """One engineer's held tickets against their capacity."""

    engineer: Engineer
    held: int

    @property
    def percent(self) -> int:
        """Held tickets as a share of capacity (capacity 0: full when holding any)."""
        if self.engineer.capacity == 0:
            return 100 if self.held else 0
        return round(100 * self.held / self.engineer.capacity)


def engineer_loads(store: ServiceStore, region: str | None = None) -> list[EngineerLoad]:
    """Every engineer (of ``region``) with the tickets they hold, most loaded first."""
    staff = store.engineers(region=region)
    held = store.engineer_load([e.id for e in staff], "")
    loads = [EngineerLoad(e, held.get(e.id, 0)) for e in staff]
    return sorted(loads, key=lambda x: (-x.percent, x.engineer.id))
