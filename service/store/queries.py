"""What a list asks of the store: who may see what (``Scope``), filters, sort and page position.

The SQL fragments here are shared by both stores (``?`` placeholders; the PostgreSQL store turns
them into ``%s``). Pages are keyset pages: ``after`` is the (sort value, id) of the last row of
the previous page, so every page costs the same however deep it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

from contract import DeviceKind
from service.model import OPEN_STATES, TicketState, Tier
from service.store.columns import OPEN_CONDITION, us

# A keyset position: the sort value (for every sort but "id") and then the id.
Position = tuple[Any, ...]
TicketSort = Literal["id", "opened", "-opened", "updated", "-updated", "due"]
# Sort name → (column, descending); None: by id alone.
TICKET_SORTS: dict[str, tuple[str | None, bool]] = {
    "id": (None, False),
    "opened": ("opened_us", False),
    "-opened": ("opened_us", True),
    "updated": ("updated_us", False),
    "-updated": ("updated_us", True),
    "due": ("due_us", False),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """The devices (and their tickets) a caller may see: every known one, a site's, a patient's."""

    site_id: str | None = None
    patient: str | None = None
    empty: bool = False  # nothing at all (a hospital or patient token without a subject)
    unplaced: bool = False  # also tickets of devices not (or no longer) installed

    def clause(self, alias: str = "") -> tuple[str, list[Any]]:
        """The SQL predicate of this scope on a tickets or devices table (optionally aliased)."""
        p = f"{alias}." if alias else ""
        if self.empty:
            return "1 = 0", []
        if self.site_id is not None:
            return f"{p}site_id = ?", [self.site_id]
        if self.patient is not None:
            return f"{p}patient = ?", [self.patient]
        if self.unplaced:
            return "1 = 1", []
        # A ticket counts only while its device is installed (site_id is kept in step).
        return f"{p}site_id IS NOT NULL", []


@dataclass(frozen=True, slots=True)
class CreditQuery:
    """Service credits in ``scope`` whose breach lies in [since, until), one keyset page."""

    scope: Scope = Scope()
    site_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[int, str] | None = None  # (breach µs, key) of the previous page's last row
    limit: int | None = None

    def where(self, *, keyset: bool = True) -> tuple[list[str], list[Any]]:
        """The predicates and their parameters."""
        clause, params = self.scope.clause()
        where = [clause]
        if self.site_id is not None:
            where.append("site_id = ?")
            params.append(self.site_id)
        if self.since is not None:
            where.append("at_us >= ?")
            params.append(us(self.since))
        if self.until is not None:
            where.append("at_us < ?")
            params.append(us(self.until))
        if keyset and self.after is not None:
            where.append("(at_us > ? OR (at_us = ? AND key > ?))")
            params += [self.after[0], self.after[0], self.after[1]]
        return where, params


@dataclass(frozen=True, slots=True)
class KnowledgeQuery:
    """Knowledge entries matching the search ``text`` (``knowledge_search``: every word, any
    order, stemmed, as a prefix), of a model or code, one keyset page."""

    text: str | None = None
    model: str | None = None
    code: str | None = None
    after: tuple[str, str] | None = None  # (model, code) of the previous page's last row
    limit: int = 100

    def where(self) -> tuple[list[str], list[Any]]:
        """The predicates and their parameters but the search ``text``'s (the store's own)."""
        where, params = ["1 = 1"], []
        if self.model is not None:
            where.append("model = ?")
            params.append(self.model)
        if self.code is not None:
            where.append("code = ?")
            params.append(self.code)
        if self.after is not None:
            where.append("(model > ? OR (model = ? AND code > ?))")
            params += [self.after[0], self.after[0], self.after[1]]
        return where, params


@dataclass(frozen=True, slots=True)
class StockQuery:
    """Stock rows of one warehouse (or all), only the low ones if asked, one keyset page."""

    warehouse: str | None = None
    low_only: bool = False
    after: tuple[str, str] | None = None  # (warehouse, part) of the previous page's last row
    limit: int = 100

    def where(self) -> tuple[list[str], list[Any]]:
        """The predicates and their parameters."""
        where, params = ["1 = 1"], []
        if self.warehouse is not None:
            where.append("warehouse = ?")
            params.append(self.warehouse)
        if self.low_only:
            where.append("low = 1")
        if self.after is not None:
            where.append("(warehouse > ? OR (warehouse = ? AND part > ?))")
            params += [self.after[0], self.after[0], self.after[1]]
        return where, params


EVERYTHING = Scope()
EVERY_TICKET = Scope(unplaced=True)  # for audits: every stored ticket, installed device or not


@dataclass(frozen=True, slots=True)
class TicketQuery:
    """Tickets in ``scope`` matching every given filter, sorted, one page (``limit`` None: all)."""

    scope: Scope = EVERYTHING
    ids: tuple[str, ...] | None = None
    device_ids: tuple[str, ...] | None = None
    states: tuple[TicketState, ...] | None = None
    device_id: str | None = None
    site_id: str | None = None
    tier: Tier | None = None
    assignee: str | None = None
    due_before: datetime | None = None
    updated_since: datetime | None = None
    updated_after: datetime | None = None  # strictly after (the KPIs' future-dated tickets)
    opened_before: datetime | None = None
    opened_since: datetime | None = None
    sort: TicketSort = "id"
    after: Position | None = None
    limit: int | None = 100
    offset: int = 0

    def where(self) -> tuple[list[str], list[Any]]:
        """The predicates and their parameters."""
        scope, params = self.scope.clause()
        clauses = [scope]
        if self.ids is not None:
            clauses.append(_in("id", len(self.ids)))
            params += self.ids
        if self.device_ids is not None:
            clauses.append(_in("device_id", len(self.device_ids)))
            params += self.device_ids
        if self.states is not None and frozenset(self.states) == OPEN_STATES:
            clauses.append(OPEN_CONDITION)  # a constant: the open tickets' partial index fits
        elif self.states is not None:
            clauses.append(_in("state", len(self.states)))
            params += [str(s) for s in self.states]
        for column, value in (
            ("device_id", self.device_id),
            ("site_id", self.site_id),
            ("tier", None if self.tier is None else str(self.tier)),
            ("assignee", self.assignee),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for clause, at in (
            ("due_us < ?", self.due_before),
            ("updated_us >= ?", self.updated_since),
            ("updated_us > ?", self.updated_after),
            ("opened_us < ?", self.opened_before),
            ("opened_us >= ?", self.opened_since),
        ):
            if at is not None:
                clauses.append(clause)
                params.append(us(at))
        keyset, more = _keyset(TICKET_SORTS[self.sort], self.after)
        return clauses + keyset, params + more

    def order(self) -> str:
        """ORDER BY … LIMIT … OFFSET … of this query."""
        column, descending = TICKET_SORTS[self.sort]
        way = " DESC" if descending else ""
        keys = f"{column}{way}, id{way}" if column else "id"
        return f" ORDER BY {keys}{_page(self.limit, self.offset)}"

    def sort_column(self) -> str:
        """The column whose value (with the id) makes a row's position."""
        return TICKET_SORTS[self.sort][0] or "id"


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """Devices in ``scope`` matching every given filter, by id, one page (``limit`` None: all)."""

    scope: Scope = EVERYTHING
    site_id: str | None = None
    kind: DeviceKind | None = None
    ward: str | None = None
    lot: str | None = None
    patient: str | None = None
    after: str | None = None
    limit: int | None = 100
    offset: int = 0

    def where(self) -> tuple[list[str], list[Any]]:
        """The predicates and their parameters."""
        scope, params = self.scope.clause()
        clauses = [scope]
        for column, value in (
            ("site_id", self.site_id),
            ("kind", None if self.kind is None else str(self.kind)),
            ("ward", self.ward),
            ("lot", self.lot),
            ("patient", self.patient),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.after is not None:
            clauses.append("id > ?")
            params.append(self.after)
        return clauses, params

    def order(self) -> str:
        """ORDER BY … LIMIT … OFFSET … of this query."""
        return f" ORDER BY id{_page(self.limit, self.offset)}"


class DeviceRow(NamedTuple):
    """A device as a board lists it, read from its columns."""

    id: str
    kind: str
    model: str
    ward: str
    room: str
    bed: str
    patient: str | None


class FleetRow(NamedTuple):
    """A device as failure rates and reports count it, read without its whole document."""

    id: str
    site_id: str
    model: str
    serial: str
    installed_on: date
    warranty_end: date | None


def _in(column: str, count: int) -> str:
    """``column IN (?, …)``; never true for an empty set."""
    return f"{column} IN ({', '.join('?' * count)})" if count else "1 = 0"


def in_clause(column: str, count: int) -> str:
    """``column IN (?, …)`` for ``count`` values (``1 = 0`` for none)."""
    return _in(column, count)


def _keyset(sort: tuple[str | None, bool], after: Position | None) -> tuple[list[str], list[Any]]:
    """The predicate that starts a page right after ``after``."""
    column, descending = sort
    clauses = [f"{column} IS NOT NULL"] if column == "due_us" else []
    if after is None:
        return clauses, []
    if column is None:
        return [*clauses, "id > ?"], [after[-1]]
    way = "<" if descending else ">"
    return [*clauses, f"({column}, id) {way} (?, ?)"], list(after[-2:])


def _page(limit: int | None, offset: int) -> str:
    """LIMIT/OFFSET of a page (the numbers are ints the caller validated)."""
    if limit is None:
        return ""  # every row: an offset needs a limit
    return f" LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else "")
