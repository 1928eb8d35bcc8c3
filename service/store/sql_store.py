"""The queries both stores share: derived columns kept in step, keyset pages, the worker's "due".

``SqlQueries`` is a mixin: a store provides ``atomic()``, ``_rows`` (a read, inside the open
transaction when there is one) and ``_execute`` (a write in the open transaction), its table
names and the few words its SQL dialect spells differently. Everything here is the same SQL on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from contract.health import GatewayHealth
from service import audit
from service.audit import AuditEntry
from service.commands_model import PENDING, CommandRecord, CommandState
from service.compensation import ServiceCredit
from service.knowledge import ANY_MODEL, KnowledgeEntry, ranked
from service.model import OPEN_STATES, Device, Ticket, TicketKind, TicketState
from service.notifications import QuietHours
from service.parts import Reservation, Stock
from service.presence_model import PresenceRecord
from service.schedules import PREVENTIVE_RULE, ScheduleConfig
from service.sla import SlaConfig
from service.store import aggregates
from service.store.aggregates import CreditTotals, KpiFacts
from service.store.columns import (
    HELD_CONDITION,
    UNPLACED,
    Placement,
    device_columns,
    from_day,
    last_pm_day,
    sla_fingerprint,
    ticket_columns,
    us,
)
from service.store.knowledge_search import words
from service.store.queries import (
    EVERYTHING,
    CreditQuery,
    DeviceQuery,
    DeviceRow,
    FleetRow,
    KnowledgeQuery,
    Position,
    Scope,
    StockQuery,
    TicketQuery,
    in_clause,
)
from service.store.rows import ticket_at, ticket_conflict, ticket_doc
from service.vigilance import HarmFlag


def _stock(row: Sequence[Any]) -> Stock:
    warehouse, part, on_hand, reserved, low_at = row
    return Stock(warehouse=warehouse, part=part, on_hand=on_hand, reserved=reserved, low_at=low_at)


REFRESH_CHUNK = 500  # tickets re-derived per transaction, so writers are never held up long
QUIET_HOURS_CHUNK = 500  # recipients per query (SQLite's parameter limit)


@dataclass(frozen=True, slots=True)
class Dialect:
    """Table names and the spellings that differ between SQLite and PostgreSQL."""

    tickets: str
    devices: str
    audit: str
    signatures: str
    credits: str  # service credits (compensation records)
    knowledge: str  # the knowledge base
    stock: str  # spare parts per warehouse
    reservations: str  # parts held for tickets
    harm: str  # tickets flagged "patient harm suspected"
    quiet_hours: str  # quiet hours patients chose on their page
    doc: str  # the document column as JSON text ("doc" or "doc::text")
    doc_text: str  # one top-level text field of the document, by name ("{}" stands for it)
    greatest: str  # the two-argument maximum ("max" or "GREATEST")
    differs: str  # null-safe inequality ("IS NOT" or "IS DISTINCT FROM")
    knowledge_match: str  # the full-text predicate of a knowledge search (one parameter)
    knowledge_terms: Callable[[Sequence[str]], str]  # a search's words as that parameter


class SqlQueries:
    """Derived columns, list pages, aggregates and the worker's due rows, on any SQL store."""

    dialect: Dialect
    _sla: SlaConfig
    _fingerprint: str

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction around everything inside (provided by the store)."""
        raise NotImplementedError

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read (provided by the store)."""
        raise NotImplementedError

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write inside ``atomic()``; the rows it touched (provided by the store)."""
        raise NotImplementedError

    @property
    def sla(self) -> SlaConfig:
        """The SLA policy the ticket clock columns are computed with."""
        return self._sla

    @sla.setter
    def sla(self, config: SlaConfig) -> None:
        self._sla = config
        self._fingerprint = sla_fingerprint(config)

    # --- devices ------------------------------------------------------------------------

    def put_device(self, device: Device) -> None:
        """Insert or replace a device; its tickets follow it to its site and patient."""
        d = self.dialect
        with self.atomic():
            columns = {**device_columns(device), "last_pm_day": self._last_pm(device)}
            names = ["id", "site_id", "doc", *columns]
            self._execute(
                f"INSERT INTO {d.devices} ({', '.join(names)})"
                f" VALUES ({', '.join('?' * len(names))}) ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{n} = excluded.{n}" for n in names[1:]),
                (device.id, device.site_id, device.model_dump_json(), *columns.values()),
            )
            moved = self._rows(
                f"SELECT id FROM {d.tickets} WHERE device_id = ? AND (site_id {d.differs} ?"
                f" OR patient {d.differs} ? OR device_kind {d.differs} ?"
                f" OR device_model {d.differs} ?)",
                (device.id, device.site_id, device.patient, str(device.kind), device.model),
            )
            # Site calendars count SLA time, so a ticket that moved gets its clocks again.
            self._refresh([r[0] for r in moved])

    def device_page(self, query: DeviceQuery) -> list[Device]:
        """One page of devices (by id)."""
        where, params = query.where()
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.devices}"
            f" WHERE {' AND '.join(where)}{query.order()}",
            params,
        )
        return [Device.model_validate_json(r[0]) for r in rows]

    def device_rows(self, query: DeviceQuery) -> list[DeviceRow]:
        """Where the devices ``query`` selects stand, from their columns (no document read)."""
        where, params = query.where()
        rows = self._rows(
            f"SELECT id, kind, model, ward, room, coalesce(bed, ''), patient"
            f" FROM {self.dialect.devices}"
            f" WHERE {' AND '.join(where)}{query.order()}",
            params,
        )
        return [DeviceRow(*r) for r in rows]

    def fleet_rows(self, query: DeviceQuery) -> list[FleetRow]:
        """What failure rates and reports read of the devices ``query`` selects (by id)."""
        where, params = query.where()
        serial = self.dialect.doc_text.format("serial")
        rows = self._rows(
            f"SELECT id, site_id, model, {serial}, installed_day, warranty_day"
            f" FROM {self.dialect.devices} WHERE {' AND '.join(where)}{query.order()}",
            params,
        )
        return [
            FleetRow(ident, site, model, serial, date.fromordinal(installed), from_day(warranty))
            for ident, site, model, serial, installed, warranty in rows
        ]

    def device_ids(self, query: DeviceQuery) -> list[str]:
        """The ids of the devices ``query`` selects (by id)."""
        where, params = query.where()
        rows = self._rows(
            f"SELECT id FROM {self.dialect.devices} WHERE {' AND '.join(where)}{query.order()}",
            params,
        )
        return [r[0] for r in rows]

    # --- tickets ------------------------------------------------------------------------

    def _placement(self, device_id: str) -> Placement:
        rows = self._rows(
            f"SELECT site_id, patient, kind, model FROM {self.dialect.devices} WHERE id = ?",
            (device_id,),
        )
        return Placement(*rows[0]) if rows else UNPLACED

    def put_ticket(self, ticket: Ticket) -> Ticket:
        """Write ``ticket`` over the revision it was read at; return it at its new version."""
        t = self.dialect.tickets
        with self.atomic():
            columns = ticket_columns(
                ticket, self._placement(ticket.device_id), self._sla, self._fingerprint
            )
            values = (ticket.device_id, str(ticket.state), ticket_doc(ticket), *columns.values())
            if ticket.version == 0:
                names = ("id", "device_id", "state", "doc", *columns, "version")
                done = self._execute(
                    f"INSERT INTO {t} ({', '.join(names)}) VALUES"
                    f" ({', '.join('?' * (len(names) - 1))}, 1) ON CONFLICT (id) DO NOTHING",
                    (ticket.id, *values),
                )
            else:
                # Under READ COMMITTED a concurrent writer's UPDATE waits for this row lock and
                # then re-checks the version, so exactly one of two racing writes succeeds.
                sets = ", ".join(f"{n} = ?" for n in ("device_id", "state", "doc", *columns))
                done = self._execute(
                    f"UPDATE {t} SET {sets}, version = version + 1 WHERE id = ? AND version = ?",
                    (*values, ticket.id, ticket.version),
                )
            if done != 1:
                raise ticket_conflict(ticket)
            if ticket.kind is TicketKind.PREVENTIVE and columns["resolved_us"] is not None:
                self._inspected(ticket, columns["resolved_us"])
        return ticket.model_copy(update={"version": ticket.version + 1})

    def _inspected(self, ticket: Ticket, resolved_us: int) -> None:
        """A resolved preventive ticket moves its device's last inspection forward."""
        d = self.dialect
        rows = self._rows(f"SELECT {d.doc} FROM {d.devices} WHERE id = ?", (ticket.device_id,))
        if rows:
            device = Device.model_validate_json(rows[0][0])
            self._execute(
                f"UPDATE {d.devices} SET last_pm_day = {d.greatest}(last_pm_day, ?) WHERE id = ?",
                (last_pm_day(device, resolved_us), ticket.device_id),
            )

    def ticket_page(self, query: TicketQuery) -> list[tuple[Ticket, Position]]:
        """One page of tickets, each with its keyset position under the query's sort."""
        where, params = query.where()
        key = query.sort_column()
        rows = self._rows(
            f"SELECT {self.dialect.doc}, version, {key}, id FROM {self.dialect.tickets}"
            f" WHERE {' AND '.join(where)}{query.order()}",
            params,
        )
        return [
            (ticket_at(doc, version), (ident,) if key == "id" else (value, ident))
            for doc, version, value, ident in rows
        ]

    def _tickets_by_id(self, ids: Sequence[str]) -> list[Ticket]:
        if not ids:
            return []
        rows = self._rows(
            f"SELECT {self.dialect.doc}, version FROM {self.dialect.tickets}"
            f" WHERE {in_clause('id', len(ids))} ORDER BY id",
            list(ids),
        )
        return [ticket_at(doc, version) for doc, version in rows]

    # --- the worker's due rows ------------------------------------------------------------

    def engineer_load(self, engineer_ids: Sequence[str], exclude_ticket: str) -> dict[str, int]:
        """Tickets each engineer holds now (dispatched … waiting), but ``exclude_ticket``."""
        if not engineer_ids:
            return {}
        # HELD_CONDITION as written in the partial index it ranges over (see columns.py).
        rows = self._rows(
            f"SELECT assignee, count(*) FROM {self.dialect.tickets} WHERE {HELD_CONDITION}"
            f" AND {in_clause('assignee', len(engineer_ids))} AND id <> ? GROUP BY assignee",
            [*engineer_ids, exclude_ticket],
        )
        return {assignee: int(n) for assignee, n in rows}

    def escalations_due(self, now: datetime) -> list[str]:
        """Ids of the tickets whose escalation instant is before ``now``, earliest first."""
        rows = self._rows(
            f"SELECT id FROM {self.dialect.tickets} WHERE escalate_us < ? ORDER BY escalate_us, id",
            (us(now),),
        )
        return [r[0] for r in rows]

    def undispatched(self, limit: int, after: tuple[int, str] | None = None) -> list[str]:
        """Ids of open tickets nobody holds, oldest first, from after ``after`` (opened, id)."""
        t = self.dialect.tickets
        keyset = ""
        params: list[Any] = [str(TicketState.OPEN)]
        if after is not None:
            keyset = " AND (opened_us > ? OR (opened_us = ? AND id > ?))"
            params += [after[0], after[0], after[1]]
        rows = self._rows(
            f"SELECT id FROM {t} WHERE state = ?{keyset} ORDER BY opened_us, id LIMIT ?",
            [*params, limit],
        )
        return [r[0] for r in rows]

    def breach_candidates(self, since: datetime, now: datetime) -> list[Ticket]:
        """Tickets with a clock breached in [since, now), as last computed (a superset)."""
        t = self.dialect.tickets
        window = (us(since), us(now))
        rows = self._rows(
            f"SELECT id FROM {t} WHERE respond_breach_us >= ? AND respond_breach_us < ?"
            f" UNION SELECT id FROM {t} WHERE resolve_breach_us >= ? AND resolve_breach_us < ?",
            (*window, *window),
        )
        return self._tickets_by_id(sorted(r[0] for r in rows))

    def schedule_candidates(self, today: date, config: ScheduleConfig) -> list[Device]:
        """Devices that may need a preventive or warranty ticket today (a superset, by id)."""
        d, t = self.dialect.devices, self.dialect.tickets
        kinds = sorted(str(k) for k in config.inspected_kinds)
        open_states = sorted(str(s) for s in OPEN_STATES)
        day = today.toordinal()
        # Sites count in their local dates (up to a day either side of ``today`` in UTC) and
        # last_pm_day holds a resolution's UTC date: two days of slack keep this a superset.
        slack = 2
        overdue = self._rows(
            f"SELECT id FROM {d} WHERE last_pm_day < ? AND {in_clause('kind', len(kinds))}"
            f" AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.device_id = {d}.id"
            f" AND {t}.rule_id = ? AND {in_clause(f'{t}.state', len(open_states))})",
            [day - config.inspection_interval.days + slack, *kinds, PREVENTIVE_RULE, *open_states],
        )
        expiring = self._rows(
            f"SELECT id FROM {d} WHERE warranty_day BETWEEN ? AND ? AND NOT EXISTS (SELECT 1"
            f" FROM {t} WHERE {t}.device_id = {d}.id AND {t}.rule_id = {d}.warranty_rule)",
            (day - config.warranty_grace.days - slack, day + config.warranty_notice.days + slack),
        )
        ids = sorted({r[0] for r in overdue} | {r[0] for r in expiring})
        if not ids:
            return []
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {d} WHERE {in_clause('id', len(ids))} ORDER BY id",
            ids,
        )
        return [Device.model_validate_json(r[0]) for r in rows]

    # --- clocks under another SLA configuration -----------------------------------------

    def refresh_clocks(self, limit: int | None = None, *, missing_only: bool = False) -> int:
        """Re-derive the columns of tickets computed under another SLA configuration (or none).

        Run in chunks of ``REFRESH_CHUNK``, each its own transaction; at most ``limit`` rows.
        Returns how many were refreshed.
        """
        t = self.dialect.tickets
        # Three index ranges rather than a scan: NULL, below and above the fingerprint.
        stale = "clocks IS NULL" + ("" if missing_only else " OR clocks < ? OR clocks > ?")
        params: tuple[Any, ...] = () if missing_only else (self._fingerprint,) * 2
        done = 0
        while limit is None or done < limit:
            size = REFRESH_CHUNK if limit is None else min(REFRESH_CHUNK, limit - done)
            found = self._rows(f"SELECT id FROM {t} WHERE ({stale}) LIMIT ?", (*params, size))
            ids = [r[0] for r in found]
            if not ids:
                break
            with self.atomic():
                self._refresh(ids)
            done += len(ids)
        return done

    def _refresh(self, ids: Sequence[str]) -> None:
        """Re-derive every column of the tickets ``ids`` from their documents (in a transaction)."""
        for ticket in self._tickets_by_id(ids):
            columns = ticket_columns(
                ticket, self._placement(ticket.device_id), self._sla, self._fingerprint
            )
            names = ", ".join(f"{n} = ?" for n in columns)
            self._execute(
                f"UPDATE {self.dialect.tickets} SET {names} WHERE id = ?",
                (*columns.values(), ticket.id),
            )

    def backfill(self) -> None:
        """Fill the derived columns of rows stored before they existed (an upgrade)."""
        d = self.dialect.devices
        select = f"SELECT {self.dialect.doc} FROM {d} WHERE {{}} IS NULL LIMIT {REFRESH_CHUNK}"
        while rows := self._rows(select.format("kind")):
            with self.atomic():
                for row in rows:
                    device = Device.model_validate_json(row[0])
                    self._set_device(device, device_columns(device))
        # Tickets need their devices' placement; last inspections need the tickets' columns.
        self.refresh_clocks(missing_only=True)
        while rows := self._rows(select.format("last_pm_day")):
            with self.atomic():
                for row in rows:
                    device = Device.model_validate_json(row[0])
                    self._set_device(device, {"last_pm_day": self._last_pm(device)})

    def _set_device(self, device: Device, columns: dict[str, Any]) -> None:
        self._execute(
            f"UPDATE {self.dialect.devices} SET {', '.join(f'{n} = ?' for n in columns)}"
            " WHERE id = ?",
            (*columns.values(), device.id),
        )

    def _last_pm(self, device: Device) -> int:
        """The device's last inspection day, from its record and its resolved PM tickets."""
        ((best,),) = self._rows(
            f"SELECT max(resolved_us) FROM {self.dialect.tickets} WHERE device_id = ? AND kind = ?",
            (device.id, str(TicketKind.PREVENTIVE)),
        )
        return last_pm_day(device, best)

    # --- aggregates -----------------------------------------------------------------------

    def kpi_facts(self, scope: Scope, now: datetime) -> KpiFacts:
        """The KPIs' sums over ``scope`` as of ``now`` (see ``service.store.aggregates``)."""
        d = self.dialect
        now_us = us(now)
        assert now_us is not None
        totals = aggregates.ticket_totals(self._rows, d.tickets, scope, now_us)
        later = self.ticket_page(TicketQuery(scope=scope, updated_after=now, limit=None))
        return KpiFacts(
            tickets=totals[0],
            respond=aggregates.clock_totals(totals[1:5]),
            resolve=aggregates.clock_totals(totals[5:9]),
            resolved=totals[9],
            fixed_first_time=totals[10],
            scored=totals[11],
            score_total=totals[12],
            reopened=totals[13],
            models=aggregates.model_totals(self._rows, d.tickets, d.devices, scope, now.date()),
            problems=aggregates.problem_totals(self._rows, d.tickets, scope),
            later=tuple(t for t, _ in later),
            credits=tuple(self.credit_totals(CreditQuery(scope=scope))),
        )

    def open_tickets(self, now: datetime) -> list[aggregates.OpenTickets]:
        """Open tickets by tier and state, with their breached clocks, at ``now`` (metrics)."""
        now_us = us(now)
        assert now_us is not None
        states = sorted(str(state) for state in OPEN_STATES)
        return aggregates.open_tickets(self._rows, self.dialect.tickets, states, now_us)

    # --- service credits ------------------------------------------------------------------

    def put_credit(self, credit: ServiceCredit) -> bool:
        """Keep a service credit; False (and nothing changed) when its key is already kept."""
        with self.atomic():
            done = self._execute(
                f"INSERT INTO {self.dialect.credits} (key, ticket_id, site_id, patient, at_us,"
                " amount_minor, currency, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (
                    credit.key,
                    credit.ticket_id,
                    credit.site_id,
                    credit.patient,
                    us(credit.breach_at),
                    credit.amount_minor,
                    credit.currency,
                    credit.model_dump_json(),
                ),
            )
        return done == 1

    def credits(self, query: CreditQuery) -> list[ServiceCredit]:
        """One keyset page of the service credits ``query`` selects, by breach instant and key."""
        where, params = query.where()
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.credits} WHERE {' AND '.join(where)}"
            f" ORDER BY at_us, key{' LIMIT ?' if query.limit is not None else ''}",
            [*params, *([query.limit] if query.limit is not None else [])],
        )
        return [ServiceCredit.model_validate_json(r[0]) for r in rows]

    def credit_totals(self, query: CreditQuery) -> list[CreditTotals]:
        """How many credits ``query`` selects and their sum, per currency (keyset ignored)."""
        where, params = query.where(keyset=False)
        rows = self._rows(
            f"SELECT currency, count(*), sum(amount_minor) FROM {self.dialect.credits}"
            f" WHERE {' AND '.join(where)} GROUP BY currency ORDER BY currency",
            params,
        )
        return [CreditTotals(c, int(n), int(total or 0)) for c, n, total in rows]

    # --- knowledge base ---------------------------------------------------------------------

    def put_knowledge(self, entry: KnowledgeEntry) -> None:
        """Insert or replace the knowledge of one (model, fault code)."""
        with self.atomic():
            self._execute(
                f"INSERT INTO {self.dialect.knowledge} (model, code, text, doc)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (model, code)"
                " DO UPDATE SET text = excluded.text, doc = excluded.doc",
                (entry.model, entry.code, entry.search_text(), entry.model_dump_json()),
            )
            self._index_knowledge(entry)

    def _index_knowledge(self, entry: KnowledgeEntry) -> None:
        """Bring a search index kept apart from the entries up to date (none by default)."""

    def knowledge_for(self, model: str, codes: Sequence[str]) -> list[KnowledgeEntry]:
        """The entries of ``model`` and of any model for ``codes`` (primary-key lookups)."""
        if not codes:
            return []
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.knowledge}"
            f" WHERE {in_clause('code', len(codes))} AND model IN (?, ?) ORDER BY code, model",
            [*codes, model, ANY_MODEL],
        )
        return ranked([KnowledgeEntry.model_validate_json(r[0]) for r in rows], model)

    def knowledge_page(self, query: KnowledgeQuery) -> list[KnowledgeEntry]:
        """One keyset page (by model, code) of the entries matching ``query``; its text is a
        full-text search (``knowledge_search``): every word, in any order, stemmed, as a prefix."""
        where, params = query.where()
        if query.text is not None:
            found = words(query.text)
            if not found:
                return []  # punctuation alone: no word to look for
            where.append(self.dialect.knowledge_match)
            params.append(self.dialect.knowledge_terms(found))
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.knowledge} WHERE {' AND '.join(where)}"
            " ORDER BY model, code LIMIT ?",
            [*params, query.limit],
        )
        return [KnowledgeEntry.model_validate_json(r[0]) for r in rows]

    # --- spare parts ------------------------------------------------------------------------

    # Every stock write recomputes ``low`` and re-arms the alert once the row is no longer low.
    _LOW = (
        "low = CASE WHEN {on_hand} - {reserved} <= {low_at} THEN 1 ELSE 0 END,"
        " alerted = CASE WHEN {on_hand} - {reserved} <= {low_at} THEN {alerted} ELSE 0 END"
    )

    def put_stock(self, warehouse: str, part: str, on_hand: int, low_at: int) -> Stock:
        """Set what a warehouse holds of a part and its low mark (reservations are kept)."""
        s = self.dialect.stock
        low = self._LOW.format(
            on_hand="?", reserved=f"{s}.reserved", low_at="?", alerted=f"{s}.alerted"
        )
        with self.atomic():
            self._execute(
                f"INSERT INTO {s} (warehouse, part, on_hand, reserved, low_at, low, alerted)"
                " VALUES (?, ?, ?, 0, ?, CASE WHEN ? <= ? THEN 1 ELSE 0 END, 0)"
                f" ON CONFLICT (warehouse, part) DO UPDATE SET on_hand = ?, low_at = ?, {low}",
                (warehouse, part, *(on_hand, low_at) * 5),
            )
            found = self.stock(warehouse, part)
        assert found is not None
        return found

    def stock(self, warehouse: str, part: str) -> Stock | None:
        """One warehouse's stock of one part, or None."""
        rows = self._rows(
            f"SELECT warehouse, part, on_hand, reserved, low_at FROM {self.dialect.stock}"
            " WHERE warehouse = ? AND part = ?",
            (warehouse, part),
        )
        return _stock(rows[0]) if rows else None

    def stock_page(self, query: StockQuery) -> list[Stock]:
        """One keyset page (by warehouse, part) of stock rows, optionally only low ones."""
        where, params = query.where()
        rows = self._rows(
            f"SELECT warehouse, part, on_hand, reserved, low_at FROM {self.dialect.stock}"
            f" WHERE {' AND '.join(where)} ORDER BY warehouse, part LIMIT ?",
            [*params, query.limit],
        )
        return [_stock(r) for r in rows]

    def reserve(self, ticket_id: str, warehouse: str, part: str, quantity: int) -> bool:
        """Hold ``quantity`` of a part for a ticket if that many are available; whether held."""
        s, r = self.dialect.stock, self.dialect.reservations
        low = self._LOW.format(
            on_hand="on_hand", reserved="(reserved + ?)", low_at="low_at", alerted="alerted"
        )
        with self.atomic():
            done = self._execute(
                f"UPDATE {s} SET reserved = reserved + ?, {low}"
                " WHERE warehouse = ? AND part = ? AND on_hand - reserved >= ?",
                (quantity, quantity, quantity, warehouse, part, quantity),
            )
            if done != 1:
                return False
            self._execute(
                f"INSERT INTO {r} (ticket_id, warehouse, part, quantity) VALUES (?, ?, ?, ?)"
                f" ON CONFLICT (ticket_id, warehouse, part)"
                f" DO UPDATE SET quantity = {r}.quantity + excluded.quantity",
                (ticket_id, warehouse, part, quantity),
            )
        return True

    def reservations(self, ticket_id: str) -> list[Reservation]:
        """The parts held for one ticket, by warehouse and part."""
        rows = self._rows(
            f"SELECT ticket_id, warehouse, part, quantity FROM {self.dialect.reservations}"
            " WHERE ticket_id = ? ORDER BY warehouse, part",
            (ticket_id,),
        )
        return [Reservation(ticket_id=t, warehouse=w, part=p, quantity=q) for t, w, p, q in rows]

    def consume(self, ticket_id: str, warehouse: str, parts: Mapping[str, int]) -> None:
        """Take used parts out of stock (their reservation first), then release what is left."""
        s, r = self.dialect.stock, self.dialect.reservations
        with self.atomic():
            held = {
                x.part: x.quantity for x in self.reservations(ticket_id) if x.warehouse == warehouse
            }
            for part, used in parts.items():
                freed = min(used, held.get(part, 0))
                low = self._LOW.format(
                    on_hand="(on_hand - ?)",
                    reserved="(reserved - ?)",
                    low_at="low_at",
                    alerted="alerted",
                )
                self._execute(
                    f"UPDATE {s} SET on_hand = on_hand - ?, reserved = reserved - ?, {low}"
                    " WHERE warehouse = ? AND part = ?",
                    (used, freed, used, freed, used, freed, warehouse, part),
                )
                if freed:
                    self._execute(
                        f"UPDATE {r} SET quantity = quantity - ?"
                        " WHERE ticket_id = ? AND warehouse = ? AND part = ?",
                        (freed, ticket_id, warehouse, part),
                    )
            self.release(ticket_id)

    def release(self, ticket_id: str) -> None:
        """Give back every part still held for a ticket."""
        s = self.dialect.stock
        low = self._LOW.format(
            on_hand="on_hand", reserved="(reserved - ?)", low_at="low_at", alerted="alerted"
        )
        with self.atomic():
            for held in self.reservations(ticket_id):
                q = held.quantity
                self._execute(
                    f"UPDATE {s} SET reserved = reserved - ?, {low}"
                    " WHERE warehouse = ? AND part = ?",
                    (q, q, q, held.warehouse, held.part),
                )
            self._execute(
                f"DELETE FROM {self.dialect.reservations} WHERE ticket_id = ?", (ticket_id,)
            )

    def low_stock_unalerted(self, limit: int) -> list[Stock]:
        """Low rows the service team has not been told about since they fell (an index)."""
        rows = self._rows(
            f"SELECT warehouse, part, on_hand, reserved, low_at FROM {self.dialect.stock}"
            " WHERE low = 1 AND alerted = 0 ORDER BY warehouse, part LIMIT ?",
            (limit,),
        )
        return [_stock(r) for r in rows]

    def mark_stock_alerted(self, warehouse: str, part: str) -> bool:
        """Note that the team was told this row is low; False when it no longer is (or was)."""
        with self.atomic():
            done = self._execute(
                f"UPDATE {self.dialect.stock} SET alerted = 1"
                " WHERE warehouse = ? AND part = ? AND low = 1 AND alerted = 0",
                (warehouse, part),
            )
        return done == 1

    # --- vigilance --------------------------------------------------------------------------

    def flag_harm(self, flag: HarmFlag) -> bool:
        """Keep the first harm flag of a ticket; False (nothing changed) when it has one."""
        with self.atomic():
            done = self._execute(
                f"INSERT INTO {self.dialect.harm} (ticket_id, flagged_us, doc) VALUES (?, ?, ?)"
                " ON CONFLICT (ticket_id) DO NOTHING",
                (flag.ticket_id, us(flag.flagged_at), flag.model_dump_json()),
            )
        return done == 1

    def harm_flag(self, ticket_id: str) -> HarmFlag | None:
        """The harm flag of one ticket, or None."""
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.harm} WHERE ticket_id = ?", (ticket_id,)
        )
        return HarmFlag.model_validate_json(rows[0][0]) if rows else None

    def harm_flags(self, limit: int, after: tuple[int, str] | None = None) -> list[HarmFlag]:
        """One keyset page of harm flags, oldest first; ``after`` = (flagged µs, ticket id)."""
        keyset, params = "1 = 1", []
        if after is not None:
            keyset = "(flagged_us > ? OR (flagged_us = ? AND ticket_id > ?))"
            params = [after[0], after[0], after[1]]
        rows = self._rows(
            f"SELECT {self.dialect.doc} FROM {self.dialect.harm} WHERE {keyset}"
            " ORDER BY flagged_us, ticket_id LIMIT ?",
            [*params, limit],
        )
        return [HarmFlag.model_validate_json(r[0]) for r in rows]

    # --- quiet hours chosen by patients ---------------------------------------------------

    def put_quiet_hours(self, recipient: str, quiet: QuietHours | None, at: datetime) -> None:
        """Keep what ``recipient`` (``role/subject``) chose: quiet hours, or None for none."""
        doc = json.dumps({"quiet_hours": None if quiet is None else quiet.model_dump(mode="json")})
        with self.atomic():
            self._execute(
                f"INSERT INTO {self.dialect.quiet_hours} (recipient, updated_us, doc)"
                " VALUES (?, ?, ?) ON CONFLICT (recipient) DO UPDATE SET"
                " updated_us = excluded.updated_us, doc = excluded.doc",
                (recipient, us(at), doc),
            )

    def quiet_hours_chosen(self, recipients: Sequence[str]) -> dict[str, QuietHours | None]:
        """What each of ``recipients`` chose, for those who chose (one query per 500)."""
        found: dict[str, QuietHours | None] = {}
        for first in range(0, len(recipients), QUIET_HOURS_CHUNK):
            chunk = list(recipients[first : first + QUIET_HOURS_CHUNK])
            marks = ", ".join("?" * len(chunk))
            for recipient, doc in self._rows(
                f"SELECT recipient, {self.dialect.doc} FROM {self.dialect.quiet_hours}"
                f" WHERE recipient IN ({marks})",
                chunk,
            ):
                quiet = json.loads(doc)["quiet_hours"]
                found[recipient] = None if quiet is None else QuietHours.model_validate(quiet)
        return found

    # --- audit ----------------------------------------------------------------------------

    def audit_head(self) -> AuditEntry | None:
        """The last audit entry (the chain's head), or None for an empty log."""
        rows = self._rows(f"SELECT * FROM {self.dialect.audit} ORDER BY seq DESC LIMIT 1")
        return audit.from_row(rows[0]) if rows else None

    def audit_seq_of(self, digest: str) -> int | None:
        """The seq of the last audit row whose hash is ``digest`` (a scan: for broken links)."""
        rows = self._rows(
            f"SELECT seq FROM {self.dialect.audit} WHERE hash = ? ORDER BY seq DESC LIMIT 1",
            (digest,),
        )
        return int(rows[0][0]) if rows else None

    def audit_rows_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` audit rows as stored with a seq above ``seq``, in sequence order."""
        rows = self._rows(
            f"SELECT * FROM {self.dialect.audit} WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [tuple(r) for r in rows]

    def audit_signatures(self, since_seq: int = 0, until_seq: int | None = None) -> dict[int, str]:
        """The signature of each signed audit row in (since_seq, until_seq], by seq."""
        rows = self._rows(
            f"SELECT seq, signature FROM {self.dialect.signatures} WHERE seq > ? AND seq <= ?",
            (since_seq, until_seq if until_seq is not None else 2**62),
        )
        return {int(seq): str(sig) for seq, sig in rows}


__all__ = ["EVERYTHING", "Dialect", "SqlQueries"]


# --- remote diagnosis and presence (issue 16) ---------------------------------------------
# Same table names and SQL on both stores; documents are JSON text in ``doc``.


class RemoteQueries:
    """Commands on tickets, device and gateway presence, gateway health (any SQL store)."""

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction around everything inside (provided by the store)."""
        raise NotImplementedError

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read (provided by the store)."""
        raise NotImplementedError

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write inside ``atomic()`` (provided by the store)."""
        raise NotImplementedError

    def put_command(self, record: CommandRecord) -> bool:
        """Insert a new command; False (nothing written) when its id exists already."""
        with self.atomic():
            return (
                self._execute(
                    "INSERT INTO remote_commands (command_id, ticket_id, state, due_us,"
                    " requested_us, doc) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (command_id) DO NOTHING",
                    _command_row(record),
                )
                == 1
            )

    def update_command(self, record: CommandRecord, expected: Sequence[CommandState]) -> bool:
        """Write ``record`` over a command still in one of ``expected`` states; False if not."""
        with self.atomic():
            _, _, state, due, _, doc = _command_row(record)
            return (
                self._execute(
                    "UPDATE remote_commands SET state = ?, due_us = ?, doc = ?"
                    f" WHERE command_id = ? AND state IN ({', '.join('?' * len(expected))})",
                    (state, due, doc, record.command_id, *(str(e) for e in expected)),
                )
                == 1
            )

    def command(self, command_id: str) -> CommandRecord | None:
        """One command, or None."""
        rows = self._rows("SELECT doc FROM remote_commands WHERE command_id = ?", (command_id,))
        return CommandRecord.model_validate_json(rows[0][0]) if rows else None

    def ticket_commands(self, ticket_id: str, limit: int = 200) -> list[CommandRecord]:
        """A ticket's commands, oldest first (at most ``limit``)."""
        rows = self._rows(
            "SELECT doc FROM remote_commands WHERE ticket_id = ?"
            " ORDER BY requested_us, command_id LIMIT ?",
            (ticket_id, limit),
        )
        return [CommandRecord.model_validate_json(r[0]) for r in rows]

    def commands_in_state(self, state: CommandState, limit: int = 100) -> list[CommandRecord]:
        """Commands in ``state``, oldest first."""
        rows = self._rows(
            "SELECT doc FROM remote_commands WHERE state = ? ORDER BY due_us LIMIT ?",
            (str(state), limit),
        )
        return [CommandRecord.model_validate_json(r[0]) for r in rows]

    def commands_overdue(self, now_us: int, limit: int = 100) -> list[CommandRecord]:
        """Pending commands whose time for a result is up."""
        rows = self._rows(
            "SELECT doc FROM remote_commands WHERE state IN (?, ?) AND due_us <= ?"
            " ORDER BY due_us LIMIT ?",
            (*(str(s) for s in PENDING), now_us, limit),
        )
        return [CommandRecord.model_validate_json(r[0]) for r in rows]

    def put_presence(self, record: PresenceRecord) -> None:
        """Insert or replace one subject's presence."""
        with self.atomic():
            self._execute(
                "INSERT INTO remote_presence (subject_id, kind, gateway_id, state, doc)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject_id) DO UPDATE SET"
                " kind = excluded.kind, gateway_id = excluded.gateway_id,"
                " state = excluded.state, doc = excluded.doc",
                (
                    record.subject_id,
                    str(record.kind),
                    record.gateway_id,
                    str(record.state),
                    record.model_dump_json(),
                ),
            )

    def presence(self, subject_id: str) -> PresenceRecord | None:
        """One gateway's or device's presence, or None if it never reported."""
        rows = self._rows("SELECT doc FROM remote_presence WHERE subject_id = ?", (subject_id,))
        return PresenceRecord.model_validate_json(rows[0][0]) if rows else None

    def put_gateway_health(self, health: GatewayHealth) -> bool:
        """Keep a gateway's health summary unless a newer one is stored; whether it was kept."""
        with self.atomic():
            return (
                self._execute(
                    "INSERT INTO remote_gateway_health (gateway_id, at_us, doc) VALUES (?, ?, ?)"
                    " ON CONFLICT (gateway_id) DO UPDATE SET at_us = excluded.at_us,"
                    " doc = excluded.doc WHERE remote_gateway_health.at_us < excluded.at_us",
                    (health.gateway_id, health.at_us, health.model_dump_json()),
                )
                == 1
            )

    def gateway_health(self, gateway_id: str) -> GatewayHealth | None:
        """A gateway's latest health summary, or None."""
        rows = self._rows(
            "SELECT doc FROM remote_gateway_health WHERE gateway_id = ?", (gateway_id,)
        )
        return GatewayHealth.model_validate_json(rows[0][0]) if rows else None


def _command_row(record: CommandRecord) -> tuple[str, str, str, int, int, str]:
    return (
        record.command_id,
        record.ticket_id,
        str(record.state),
        record.due_us,
        record.requested_at_us,
        record.model_dump_json(),
    )


# The DDL of the tables above, per dialect (appended to each store's schema).
REMOTE_TABLES_SQLITE = """
CREATE TABLE IF NOT EXISTS remote_commands (
    command_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL, state TEXT NOT NULL,
    due_us INTEGER NOT NULL, requested_us INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS remote_commands_ticket ON remote_commands (ticket_id, requested_us);
CREATE INDEX IF NOT EXISTS remote_commands_state ON remote_commands (state, due_us);
CREATE TABLE IF NOT EXISTS remote_presence (
    subject_id TEXT PRIMARY KEY, kind TEXT NOT NULL, gateway_id TEXT NOT NULL,
    state TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS remote_presence_gateway ON remote_presence (gateway_id);
CREATE TABLE IF NOT EXISTS remote_gateway_health (
    gateway_id TEXT PRIMARY KEY, at_us INTEGER NOT NULL, doc TEXT NOT NULL);
"""
