"""What people are told: who hears about a ticket event, what they read, and the outbox rows.

Pure functions of the ticket, its device and the configuration; the worker writes their result
into the outbox in the same transaction as the change they report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.topics import notification_topic
from service.audit import canonical_json
from service.business_hours import TimeZoneName
from service.compensation import ServiceCredit
from service.email import SmtpConfig
from service.escalation import Escalation
from service.model import Channel, Device, OutboxItem, Ticket, Tier
from service.parts import Stock
from service.routing import Route, patient_message, route_of
from service.sla import Breach, SlaConfig, sla_status

ROLES = ("service", "engineer", "hospital", "patient", "clinical", "nurse")
_RECIPIENT = re.compile(rf"^({'|'.join(ROLES)})/[A-Za-z0-9._:-]{{1,128}}$")
EmailAddress = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class Endpoint(BaseModel):
    """A webhook subscriber and the secret its signatures are made with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: str


class QuietHours(BaseModel):
    """A daily span of local time in which non-urgent news waits (``22:00``-``07:00`` wraps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.start == self.end:
            raise ValueError("quiet hours must start and end at different times")
        return self

    def release(self, at: datetime) -> datetime:
        """``at`` if it is outside the quiet hours, else when they end (UTC)."""
        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            quiet, day = self.start <= now < self.end, local.date()
        else:
            quiet = now >= self.start or now < self.end
            day = local.date() if now < self.end else local.date() + timedelta(days=1)
        if not quiet:
            return at
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)


class Shift(BaseModel):
    """One nurse on duty for a site's clinical support team: local hours on given weekdays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nurse: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
    start: time
    end: time  # before ``start``: the shift runs past midnight
    weekdays: frozenset[Annotated[int, Field(ge=0, le=6)]] = frozenset(range(7))
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.start == self.end:
            raise ValueError("a shift must start and end at different times")
        return self

    def covers(self, at: datetime) -> bool:
        """True when ``at`` falls in this shift (a night shift counts from its start's day)."""
        local = at.astimezone(ZoneInfo(self.timezone))
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.weekdays and self.start <= now < self.end
        if now >= self.start:
            return local.weekday() in self.weekdays
        return now < self.end and (local.weekday() - 1) % 7 in self.weekdays


class RecipientPrefs(BaseModel):
    """One recipient's choices: which channels, which e-mail addresses, when to stay quiet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: frozenset[Channel] = frozenset(Channel)
    emails: tuple[EmailAddress, ...] = Field((), max_length=10)
    quiet_hours: QuietHours | None = None  # patients only: urgent news is never held
    # The patient chose ``quiet_hours`` (None: none) on their page: the default does not apply.
    quiet_hours_chosen: bool = False


class NotifyConfig(BaseModel):
    """Who is told how: webhooks per recipient, e-mail over SMTP, preferences and quiet hours.

    ``clinical`` holds the webhooks of each site's clinical support team (the nurse on duty);
    ``recipients`` the preferences of a recipient named ``role/subject`` (e.g.
    ``patient/pt-0003``); ``patient_quiet_hours`` applies to patients without their own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_team: tuple[Endpoint, ...] = ()
    engineers: dict[str, tuple[Endpoint, ...]] = {}
    sites: dict[str, tuple[Endpoint, ...]] = {}
    patients: dict[str, tuple[Endpoint, ...]] = {}
    clinical: dict[str, tuple[Endpoint, ...]] = {}
    nurses: dict[str, tuple[Endpoint, ...]] = {}
    rota: dict[str, tuple[Shift, ...]] = {}  # site → the shifts of its clinical support team
    recipients: dict[str, RecipientPrefs] = {}
    patient_quiet_hours: QuietHours | None = None
    smtp: SmtpConfig | None = None
    attempts: int = 5
    backoff_s: float = 1.0
    backoff_cap_s: float = 300.0

    @model_validator(mode="after")
    def _recipients(self) -> Self:
        for key, prefs in self.recipients.items():
            if not _RECIPIENT.match(key):
                raise ValueError(
                    f"recipient {key[:80]!r} must read role/subject, role one of {', '.join(ROLES)}"
                )
            if prefs.emails and self.smtp is None:
                raise ValueError(f"recipient {key} has e-mail addresses but no smtp is configured")
        return self

    def endpoints(self, role: str, subject: str) -> tuple[Endpoint, ...]:
        """The webhooks of one recipient."""
        by_role = {
            "engineer": self.engineers,
            "hospital": self.sites,
            "patient": self.patients,
            "clinical": self.clinical,
            "nurse": self.nurses,
        }
        if role == "service":
            return self.service_team
        return by_role.get(role, {}).get(subject, ())

    def prefs(self, role: str, subject: str) -> RecipientPrefs:
        """The preferences of one recipient (all channels, no e-mail, no quiet hours: default)."""
        found = self.recipients.get(f"{role}/{subject}")
        if found is None:
            quiet = self.patient_quiet_hours if role == "patient" else None
            return RecipientPrefs(quiet_hours=quiet)
        default = role == "patient" and not found.quiet_hours_chosen
        if found.quiet_hours is None and default and self.patient_quiet_hours:
            return found.model_copy(update={"quiet_hours": self.patient_quiet_hours})
        return found

    def on_duty(self, site_id: str, at: datetime) -> list[str]:
        """The nurses of ``site_id``'s clinical team on duty at ``at``, by id."""
        return sorted({s.nurse for s in self.rota.get(site_id, ()) if s.covers(at)})

    def first_try(self, note: Notification, now: datetime) -> datetime:
        """When ``note`` may go out: now, or after a patient's quiet hours unless urgent."""
        quiet = self.prefs(note.role, note.subject).quiet_hours
        if note.role != "patient" or note.urgent or quiet is None:
            return now
        return quiet.release(now)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one recipient (``role``/``subject``, e.g. ``engineer``/``e1``)."""

    role: str
    subject: str
    event: str
    payload: Mapping[str, Any]
    occurrence: str = ""  # which time this event happened to the ticket (escalations repeat)
    urgent: bool = False  # urgent news reaches patients even in their quiet hours

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
    """Who hears about ``ticket``: its team, its engineer, its hospital and its patient.

    A wound alert (``routing.route_of``) goes to the site's clinical support team, not to
    field service; a device fault to the service team. Patients and carers read plain words.
    """
    full = ticket_summary(ticket, device, now, sla)
    when = ticket.last_change.isoformat()
    urgent = ticket.tier is Tier.URGENT
    route = route_of(ticket, device)
    notes = []
    if route is Route.CLINICAL and device is not None:
        clinical = full | {"patient": device.patient, "route": str(route)}
        notes.append(Notification("clinical", device.site_id, event, clinical, when, urgent))
    else:
        notes.append(Notification("service", "team", event, full, when, urgent))
    if ticket.assignee:
        notes.append(Notification("engineer", ticket.assignee, event, full, when, urgent))
    if device is not None:
        keys = ("ticket_id", "device_id", "state", "title", "assignee", "dispatch_reason")
        brief = {k: full[k] for k in keys}
        notes.append(Notification("hospital", device.site_id, event, brief, when, urgent))
        if device.patient:
            # Patients and carers get what they need to act on, nothing about other people.
            plain = {
                "ticket_id": ticket.id,
                "device_id": ticket.device_id,
                "state": str(ticket.state),
                "message": patient_message(ticket, device, route),
            }
            notes.append(Notification("patient", device.patient, event, plain, when, urgent))
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
    # A wound alert nobody took is the clinical team's to chase, not field service's.
    clinical = device is not None and route_of(result.ticket, device) is Route.CLINICAL
    desk_role, desk_subject = (
        ("clinical", device.site_id) if clinical and device else ("service", "team")
    )
    notes = [Notification(desk_role, desk_subject, "ticket.escalated", full, when)]
    if result.supervisor_id:
        notes.append(Notification("engineer", result.supervisor_id, "ticket.escalated", full, when))
    if result.ticket.assignee and result.ticket.assignee != result.lapsed_assignee:
        notes.append(
            Notification("engineer", result.ticket.assignee, "ticket.dispatched", full, when)
        )
    return notes


def breach_notification(breach: Breach, credit: ServiceCredit | None = None) -> Notification:
    """The service team hears of every SLA breach, once (with the service credit it earned)."""
    payload: dict[str, Any] = {
        "ticket_id": breach.ticket_id,
        "clock": str(breach.clock),
        "tier": str(breach.tier),
        "at": breach.at.isoformat(),
    }
    if credit is not None:
        payload |= {"credit_minor": credit.amount_minor, "currency": credit.currency}
    return Notification(
        "service", "team", "sla.breached", payload, f"{breach.clock}:{breach.at.isoformat()}"
    )


def low_stock_notification(stock: Stock, now: datetime) -> Notification:
    """The service team hears once each time a part's stock falls to its low mark."""
    payload = {
        "warehouse": stock.warehouse,
        "part": stock.part,
        "on_hand": stock.on_hand,
        "reserved": stock.reserved,
        "available": stock.available,
        "low_at": stock.low_at,
    }
    occurrence = f"{stock.warehouse}/{stock.part}/{now.isoformat()}"
    return Notification("service", "team", "stock.low", payload, occurrence)


def mqtt_body(note: Notification) -> bytes:
    """The MQTT body of a notification: canonical JSON of the payload plus the event name."""
    return canonical_json({"event": note.event, **note.payload})


def outbox_items(
    notes: Iterable[Notification], config: NotifyConfig, now: datetime
) -> list[OutboxItem]:
    """The outbox rows for ``notes``: one per MQTT topic and one per configured webhook."""
    items: list[OutboxItem] = []
    for note in _with_nurses_on_duty(notes, config, now):
        prefs = config.prefs(note.role, note.subject)
        targets = [(Channel.MQTT, notification_topic(note.role, note.subject))]
        targets += [(Channel.WEBHOOK, e.url) for e in config.endpoints(note.role, note.subject)]
        targets += [(Channel.EMAIL, address) for address in prefs.emails]
        first = config.first_try(note, now)
        for channel, target in targets:
            if channel not in prefs.channels:
                continue
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
                    next_at=first,
                )
            )
    return items


def _with_nurses_on_duty(
    notes: Iterable[Notification], config: NotifyConfig, now: datetime
) -> list[Notification]:
    """``notes``, and for each one to a site's clinical team the same to its nurses on duty."""
    out: list[Notification] = []
    for note in notes:
        out.append(note)
        if note.role == "clinical":
            for nurse in config.on_duty(note.subject, now):
                out.append(
                    Notification(
                        "nurse", nurse, note.event, note.payload, note.occurrence, note.urgent
                    )
                )
    return out


def wall_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def opened_notifications(
    ticket: Ticket, device: Device | None, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """The news of a new ticket: dispatched if it found an engineer, opened otherwise."""
    event = "ticket.dispatched" if ticket.assignee else "ticket.opened"
    return ticket_notifications(ticket, device, event, now, sla)
