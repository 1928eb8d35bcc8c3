"""Alert intake: turn alert events into tickets, at most one open ticket per (device, rule)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from contract import AlertEvent, AlertTransition
from service.model import Evidence, Ticket, TicketKind, Tier, new_ticket
from service.sla import SlaConfig, tier_for


@dataclass(frozen=True, slots=True)
class Intake:
    """What an alert did: ``ticket`` is new (``created``), updated, or None when ignored."""

    ticket: Ticket | None
    created: bool


def alert_time(alert: AlertEvent) -> datetime:
    """The alert's instant as an aware UTC datetime."""
    return datetime.fromtimestamp(alert.at_us / 1_000_000, tz=UTC)


def evidence_of(alert: AlertEvent) -> Evidence:
    """The alert as ticket evidence."""
    return Evidence(
        at=alert_time(alert),
        severity=alert.severity,
        transition=alert.transition,
        message=alert.message,
        data=alert.evidence,
    )


def find_open(tickets: Iterable[Ticket], device_id: str, rule_id: str) -> Ticket | None:
    """The open ticket for (device, rule), if any."""
    return next(
        (t for t in tickets if t.is_open and t.device_id == device_id and t.rule_id == rule_id),
        None,
    )


def open_or_append(
    tickets: Iterable[Ticket], alert: AlertEvent, new_id: str, config: SlaConfig
) -> Intake:
    """Append ``alert`` to the open ticket for its (device, rule), or open one named ``new_id``.

    Only a RAISED alert opens a ticket; acknowledgements and clears are evidence, never tickets.
    A more severe alert upgrades the tier (never downgrades) and restarts nothing: the SLA keeps
    counting from the opening, and a breach this causes is dated at the upgrade.
    """
    current = find_open(tickets, alert.device_id, alert.rule_id)
    item = evidence_of(alert)
    if current is None:
        if alert.transition is not AlertTransition.RAISED:
            return Intake(None, created=False)
        ticket = new_ticket(
            new_id,
            alert.device_id,
            tier_for(alert.severity, config),
            item.at,
            rule_id=alert.rule_id,
            kind=TicketKind.ALERT,
            title=alert.message or alert.rule_id,
            evidence=(item,),
        )
        return Intake(ticket, created=True)
    update: dict[str, object] = {"evidence": (*current.evidence, item)}
    tier = tier_for(alert.severity, config)
    if tier is Tier.URGENT and current.tier is not Tier.URGENT:
        update |= {"tier": tier, "tier_since": max(item.at, current.opened_at)}
    return Intake(current.model_copy(update=update), created=False)
