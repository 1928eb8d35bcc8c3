"""The columns stored next to each ticket and device document, so lists, scopes and clocks are SQL.

Pure: both store implementations write exactly these values. Instants are whole µs since the
epoch and dates are proleptic ordinals (``date.toordinal()``), so both databases compare them
the same way.

The clock columns depend on the SLA configuration they were computed with: each ticket row keeps
the fingerprint of that configuration (``clocks``), and ``refresh_clocks`` recomputes the rows of
any other one (after an SLA settings change, or rows written before these columns existed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from infra.time_us import us_from_datetime
from service.escalation import escalation_due_at
from service.model import ASSIGNED_STATES, OPEN_STATES, Device, Ticket, TicketState
from service.schedules import warranty_rule
from service.sla import Clock, SlaConfig, breach_instant, clock_status, deadline

# Every derived ticket column with its SQL type (the same on both databases).
TICKET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site_id", "TEXT"),
    ("patient", "TEXT"),
    ("device_kind", "TEXT"),
    ("device_model", "TEXT"),
    ("tier", "TEXT"),
    ("kind", "TEXT"),
    ("rule_id", "TEXT"),
    ("assignee", "TEXT"),
    ("fault", "TEXT"),
    ("opened_us", "BIGINT"),
    ("updated_us", "BIGINT"),
    ("resolved_us", "BIGINT"),
    ("site_visits", "INTEGER"),
    ("paused", "INTEGER"),
    ("respond_due_us", "BIGINT"),
    ("resolve_due_us", "BIGINT"),
    ("respond_stop_us", "BIGINT"),
    ("resolve_stop_us", "BIGINT"),
    ("respond_elapsed_us", "BIGINT"),
    ("resolve_elapsed_us", "BIGINT"),
    ("respond_breach_us", "BIGINT"),
    ("resolve_breach_us", "BIGINT"),
    ("escalate_us", "BIGINT"),
    ("due_us", "BIGINT"),
    ("satisfaction", "INTEGER"),
    ("reopens", "INTEGER"),
    ("clocks", "TEXT"),
)
# Bumped when a derived column is added or computed differently: rows derived under an older
# version count as computed under another configuration, so ``refresh_clocks`` fills them in.
COLUMNS_VERSION = 2
TICKET_COLUMN_NAMES = tuple(name for name, _ in TICKET_COLUMNS)

# Every derived device column with its SQL type; ``last_pm_day`` is kept by the store.
DEVICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient", "TEXT"),
    ("kind", "TEXT"),
    ("model", "TEXT"),
    ("lot", "TEXT"),
    ("ward", "TEXT"),
    ("room", "TEXT"),
    ("bed", "TEXT"),  # NULL on rows stored before it existed: read as ""
    ("installed_day", "INTEGER"),
    ("warranty_day", "INTEGER"),
    ("warranty_rule", "TEXT"),
    ("last_pm_day", "INTEGER"),
)
DEVICE_COLUMN_NAMES = tuple(name for name, _ in DEVICE_COLUMNS)

# Tickets that count against their assignee's capacity, as SQL. The partial index of held
# tickets and the engineer-load query spell it identically (constants, not parameters), so
# both databases see that the index covers the query: a dispatch then reads the candidates'
# held tickets only, not every ticket they ever had nor every held ticket of the network.
HELD_CONDITION = "state IN ({})".format(", ".join(f"'{s}'" for s in sorted(ASSIGNED_STATES)))
# The open tickets, spelt the same way for a partial index (id order) that the lists and boards
# of open tickets page through: a page of them costs the page, not every open ticket.
OPEN_CONDITION = "state IN ({})".format(", ".join(f"'{s}'" for s in sorted(OPEN_STATES)))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a ticket's device stands, as the devices table says (None fields: unknown)."""

    site_id: str | None
    patient: str | None
    kind: str | None
    model: str | None


UNPLACED = Placement(None, None, None, None)


def placement_of(device: Device | None) -> Placement:
    """The placement the devices table holds for ``device`` (its row is written from it)."""
    if device is None:
        return UNPLACED
    return Placement(device.site_id, device.patient, str(device.kind), device.model)


def sla_fingerprint(sla: SlaConfig) -> str:
    """A short, stable name of an SLA configuration: equal configurations, equal names."""
    dumped = {**_sorted_sets(sla.model_dump(mode="json")), "columns": COLUMNS_VERSION}
    digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _sorted_sets(value: Any) -> Any:
    """``value`` with every list sorted: sets (weekdays, holidays) dump in no fixed order."""
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_sorted_sets(v) for v in value), key=lambda v: json.dumps(v))
    return value


def us(at: datetime | None) -> int | None:
    """An instant as whole µs since the epoch, or None."""
    return None if at is None else us_from_datetime(at)


def day(on: date | None) -> int | None:
    """A date as its proleptic ordinal, or None."""
    return None if on is None else on.toordinal()


def from_day(ordinal: int | None) -> date | None:
    """The date of a proleptic ordinal (``day``'s inverse), or None."""
    return None if ordinal is None else date.fromordinal(ordinal)


def updated_at(ticket: Ticket) -> datetime:
    """The latest instant the ticket records: a state change, evidence, escalation, sign-off."""
    instants = [ticket.opened_at, ticket.tier_since, *ticket.escalated_at]
    instants += [c.at for c in ticket.history] + [e.at for e in ticket.evidence]
    if ticket.signature is not None:
        instants.append(ticket.signature.at)
    return max(instants)


def ticket_columns(
    ticket: Ticket, placed: Placement, sla: SlaConfig, fingerprint: str
) -> dict[str, Any]:
    """The derived columns of ``ticket`` (its device placed at ``placed``), by name."""
    config = (
        sla.for_site(placed.site_id) if placed.site_id else sla.model_copy(update={"site_of": None})
    )
    columns: dict[str, Any] = {
        "site_id": placed.site_id,
        "patient": placed.patient,
        "device_kind": placed.kind,
        "device_model": placed.model,
        "tier": str(ticket.tier),
        "kind": str(ticket.kind),
        "rule_id": ticket.rule_id,
        "assignee": ticket.assignee,
        "fault": ticket.fault,
        "opened_us": us(ticket.opened_at),
        "updated_us": us(updated_at(ticket)),
        "resolved_us": us(ticket.episode().entered(TicketState.RESOLVED)),
        "site_visits": ticket.site_visits,
        "paused": int(ticket.state is TicketState.WAITING_FOR_CUSTOMER),
        "escalate_us": us(escalation_due_at(ticket, config)),
        "satisfaction": ticket.satisfaction,
        "reopens": len(ticket.reopens),
        "clocks": fingerprint,
    }
    running: list[int] = []
    for clock in Clock:
        columns.update(_clock_columns(ticket, clock, config))
        due, stop = columns[f"{clock}_due_us"], columns[f"{clock}_stop_us"]
        if due is not None and stop is None:
            running.append(due)
    columns["due_us"] = min(running, default=None)
    return columns


def _clock_columns(ticket: Ticket, clock: Clock, config: SlaConfig) -> dict[str, int | None]:
    """Deadline, stop, SLA time spent at the stop, and breach instant of one clock."""
    stop = ticket.episode().entered(
        TicketState.ACCEPTED if clock is Clock.RESPOND else TicketState.RESOLVED
    )
    elapsed = None
    if stop is not None:
        spent = clock_status(ticket, clock, stop, config).elapsed
        elapsed = spent.days * 86_400_000_000 + spent.seconds * 1_000_000 + spent.microseconds
    return {
        f"{clock}_due_us": us(deadline(ticket, clock, config)),
        f"{clock}_stop_us": us(stop),
        f"{clock}_elapsed_us": elapsed,
        f"{clock}_breach_us": us(breach_instant(ticket, clock, config)),
    }


def device_columns(device: Device) -> dict[str, Any]:
    """The derived columns of ``device`` but ``last_pm_day`` (which needs its tickets)."""
    return {
        "patient": device.patient,
        "kind": str(device.kind),
        "model": device.model,
        "lot": device.lot,
        "ward": device.location.ward if device.location else "",
        "room": device.location.room if device.location else "",
        "bed": device.location.bed if device.location else "",
        "installed_day": day(device.installed_on),
        "warranty_day": day(device.warranty_end),
        "warranty_rule": warranty_rule(device),
    }


def last_pm_day(device: Device, resolved_preventive_us: int | None) -> int:
    """The day of the device's last inspection: recorded, installed, or a resolved PM ticket.

    The same rule as ``schedules.last_inspection``; a resolved instant counts by its UTC date.
    """
    days = [device.installed_on.toordinal()]
    if device.last_inspection is not None:
        days.append(device.last_inspection.toordinal())
    if resolved_preventive_us is not None:
        days.append(_utc_day(resolved_preventive_us))
    return max(days)


def _utc_day(at_us: int) -> int:
    """The UTC date (as an ordinal) of an instant in µs: 719163 is 1970-01-01."""
    return 719_163 + at_us // 86_400_000_000
