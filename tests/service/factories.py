"""Builders for service tests: an installed base and tickets walked through the lifecycle."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from contract import DeviceKind
from service.lifecycle import Accept, Arrive, Dispatch, Event, transition
from service.model import Device, Engineer, Site, Ticket, TicketKind, Tier, new_ticket

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def hours(n: float) -> timedelta:
    """Shorthand for a number of hours."""
    return timedelta(hours=n)


def site(site_id: str = "s1", region: str = "north") -> Site:
    """A hospital in ``region``."""
    return Site(id=site_id, hospital=f"Hospital {site_id}", region=region)


def device(
    device_id: str = "d1",
    kind: DeviceKind = DeviceKind.ENDOSCOPE,
    *,
    model: str = "EX-100",
    lot: str = "L1",
    site_id: str = "s1",
    installed_on: date = date(2024, 1, 1),
    warranty_end: date | None = None,
    last_inspection: date | None = None,
) -> Device:
    """An installed device."""
    return Device(
        id=device_id,
        kind=kind,
        model=model,
        serial=f"SN-{device_id}",
        lot=lot,
        installed_on=installed_on,
        warranty_end=warranty_end,
        site_id=site_id,
        last_inspection=last_inspection,
    )


def engineer(
    engineer_id: str,
    region: str = "north",
    skills: frozenset[DeviceKind] = frozenset({DeviceKind.ENDOSCOPE}),
    capacity: int = 3,
    supervisor: str | None = "boss",
) -> Engineer:
    """A field engineer."""
    return Engineer(
        id=engineer_id,
        name=f"Engineer {engineer_id}",
        region=region,
        skills=skills,
        capacity=capacity,
        supervisor=supervisor,
    )


def ticket(
    ticket_id: str = "t1",
    device_id: str = "d1",
    tier: Tier = Tier.URGENT,
    at: datetime = T0,
    rule_id: str | None = "r1",
    kind: TicketKind = TicketKind.ALERT,
) -> Ticket:
    """An open ticket."""
    return new_ticket(ticket_id, device_id, tier, at, rule_id=rule_id, kind=kind)


def walk(t: Ticket, *steps: tuple[Event, datetime]) -> Ticket:
    """Apply lifecycle events in order."""
    for event, at in steps:
        t = transition(t, event, at)
    return t


def accepted(t: Ticket, at: datetime, engineer_id: str = "e1") -> Ticket:
    """``t`` dispatched and accepted at ``at``."""
    return walk(t, (Dispatch(engineer_id, "test"), at), (Accept(), at))


def on_site(t: Ticket, at: datetime, engineer_id: str = "e1") -> Ticket:
    """``t`` dispatched, accepted and the engineer on site at ``at``."""
    return walk(accepted(t, at, engineer_id), (Arrive(), at))
