"""What people are told: who hears about a ticket event, what they read, and the outbox rows.

Pure functions of the ticket, its device and the configuration; the worker writes their result
into the outbox in the same transaction as the change they report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from contract.topics import notification_topic
from service.audit import canonical_json
from service.escalation import Escalation
from service.model import Channel, Device, OutboxItem, Ticket
from service.sla import Breach, SlaConfig, sla_status


class Endpoint(BaseModel):
    """A webhook subscriber and the secret its signatures are made with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: str


class NotifyConfig(BaseModel):
    """Who gets webhooks: the service team, engineers, hospitals (by site), patients' carers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_team: tuple[Endpoint, ...] = ()
    engineers: dict[str, tuple[Endpoint, ...]] = {}
    sites: dict[str, tuple[Endpoint, ...]] = {}
    patients: dict[str, tuple[Endpoint, ...]] = {}
    attempts: int = 5
    backoff_s: float = 1.0
    backoff_cap_s: float = 300.0

    def endpoints(self, role: str, subject: str) -> tuple[Endpoint, ...]:
        """The webhooks of one recipient."""
        by_role = {"engineer": self.engineers, "hospital": self.sites, "patient": self.patients}
        if role == "service":
            return self.service_team
        return by_role.get(role, {}).get(subject, ())


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one recipient (``role``/``subject``, e.g. ``engineer``/``e1``)."""

    role: str
    subject: str
    event: str
    payload: Mapping[str, Any]
    occurrence: str = ""  # which time this event happened to the ticket (escalations repeat)

    @property
    def event_id(self) -> str:
        """Unique per ticket, event, occurrence and recipient; receivers dedupe on it."""
        base = f"{self.payload.get('ticket_id', '-')}:{self.event}:{self.role}:{self.subject}"
        return f"{base}:{self.occurrence}" if self.occurrence else base


def ticket_summary(
    ticket: Ticket, device: Device | None, now: datetime, sla: SlaConfig
) -> dict[str, Any]:
    """What the service team and engineers are told about a ticket."""
    status = sla_status(ticket, now, sla)
    return {
        "ticket_id": ticket.id,
        "device_id": ticket.device_id,
        "rule_id": ticket.rule_id,
        "kind": str(ticket.kind),
        "tier": str(ticket.tier),
        "state": str(ticket.state),
        "title": ticket.title,
        "assignee": ticket.assignee,
        "dispatch_reason": ticket.dispatch_reason,
        "opened_at": ticket.opened_at.isoformat(),
        "site_id": device.site_id if device else None,
        "respond_by": _iso(status.respond.deadline),
        "resolve_by": _iso(status.resolve.deadline),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def ticket_notifications(
    ticket: Ticket, device: Device | None, event: str, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """Who hears about ``ticket``: the team, its engineer, its hospital and its patient."""
    full = ticket_summary(ticket, device, now, sla)
    when = ticket.last_change.isoformat()
    notes = [Notification("service", "team", event, full, when)]
    if ticket.assignee:
        notes.append(Notification("engineer", ticket.assignee, event, full, when))
    if device is not None:
        keys = ("ticket_id", "device_id", "state", "title", "assignee", "dispatch_reason")
        brief = {k: full[k] for k in keys}
        notes.append(Notification("hospital", device.site_id, event, brief, when))
        if device.patient:
            # Patients and carers get what they need to act on, nothing about other people.
            notes.append(
                Notification(
                    "patient",
                    device.patient,
                    event,
                    {
                        "ticket_id": ticket.id,
                        "device_id": ticket.device_id,
                        "state": str(ticket.state),
                        "message": "A service engineer has been assigned to your kit."
                        if ticket.assignee
                        else "Your kit needs attention; the service team is informed.",
                    },
                    when,
                )
            )
    return notes


def escalation_notifications(
    result: Escalation, device: Device | None, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """The supervisor (or the desk when nobody held it) and the new engineer."""
    full = ticket_summary(result.ticket, device, now, sla) | {
        "lapsed_assignee": result.lapsed_assignee,
        "outcome": result.outcome.reason,
    }
    when = now.isoformat()
    notes = [Notification("service", "team", "ticket.escalated", full, when)]
    if result.supervisor_id:
        notes.append(Notification("engineer", result.supervisor_id, "ticket.escalated", full, when))
    if result.ticket.assignee and result.ticket.assignee != result.lapsed_assignee:
        notes.append(
            Notification("engineer", result.ticket.assignee, "ticket.dispatched", full, when)
        )
    return notes


def breach_notification(breach: Breach) -> Notification:
    """The service team hears of every SLA breach, once."""
    return Notification(
        "service",
        "team",
        "sla.breached",
        {
            "ticket_id": breach.ticket_id,
            "clock": str(breach.clock),
            "tier": str(breach.tier),
            "at": breach.at.isoformat(),
        },
        f"{breach.clock}:{breach.at.isoformat()}",
    )


def mqtt_body(note: Notification) -> bytes:
    """The MQTT body of a notification: canonical JSON of the payload plus the event name."""
    return canonical_json({"event": note.event, **note.payload})


def outbox_items(
    notes: Iterable[Notification], config: NotifyConfig, now: datetime
) -> list[OutboxItem]:
    """The outbox rows for ``notes``: one per MQTT topic and one per configured webhook."""
    items: list[OutboxItem] = []
    for note in notes:
        targets = [(Channel.MQTT, notification_topic(note.role, note.subject))]
        targets += [(Channel.WEBHOOK, e.url) for e in config.endpoints(note.role, note.subject)]
        for channel, target in targets:
            items.append(
                OutboxItem(
                    key=f"{note.event_id}|{channel}|{target}",
                    event_id=note.event_id,
                    channel=channel,
                    target=target,
                    role=note.role,
                    subject=note.subject,
                    event=note.event,
                    payload=dict(note.payload),
                    created_at=now,
                    next_at=now,
                )
            )
    return items


def wall_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def opened_notifications(
    ticket: Ticket, device: Device | None, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """The news of a new ticket: dispatched if it found an engineer, opened otherwise."""
    event = "ticket.dispatched" if ticket.assignee else "ticket.opened"
    return ticket_notifications(ticket, device, event, now, sla)
