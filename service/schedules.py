"""Scheduled work: preventive maintenance and warranty-expiry tasks due at ``now``; pure.

Days are the site's local days: a device in Shanghai is due on Shanghai's date, not UTC's (a
task due "today" would otherwise open at 08:00 local time, or a day late in the Americas).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from contract import DeviceKind
from service.business_hours import TimeZoneName
from service.model import Device, Ticket, TicketKind, TicketState, Tier, new_ticket

PREVENTIVE_RULE = "schedule:preventive"
WARRANTY_RULE_PREFIX = "schedule:warranty-expiry:"


class ScheduleConfig(BaseModel):
    """How often devices are inspected and how early warranty expiry is flagged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inspection_interval: timedelta = timedelta(days=90)
    warranty_notice: timedelta = timedelta(days=30)
    # Past this, an expired warranty is old news (e.g. when importing an installed base).
    warranty_grace: timedelta = timedelta(days=30)
    # Disposable dressings are replaced, not maintained.
    inspected_kinds: frozenset[DeviceKind] = frozenset(
        {DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE}
    )
    # Whose calendar days count: each site's time zone, else the default one.
    timezone: TimeZoneName = "UTC"
    site_timezones: dict[str, TimeZoneName] = {}

    def local_day(self, site_id: str, at: datetime) -> date:
        """The date ``at`` falls on at ``site_id`` (in its time zone)."""
        return at.astimezone(ZoneInfo(self.site_timezones.get(site_id, self.timezone))).date()


@dataclass(frozen=True, slots=True)
class ScheduledTask:
    """A ticket to open: for which device, under which rule id, and why."""

    kind: TicketKind
    device_id: str
    rule_id: str
    due: date
    reason: str


def warranty_rule(device: Device) -> str | None:
    """The rule id of the warranty-expiry ticket of ``device``'s current warranty, if any."""
    if device.warranty_end is None:
        return None
    return f"{WARRANTY_RULE_PREFIX}{device.warranty_end.isoformat()}"


def last_inspection(
    device: Device, tickets: Iterable[Ticket], config: ScheduleConfig | None = None
) -> date:
    """The latest of the recorded inspection, the install date and resolved preventive tickets.

    A resolution counts on the site's local date (``config``; UTC without one).
    """
    config = config or ScheduleConfig()
    done = [
        config.local_day(device.site_id, resolved)
        for t in tickets
        if t.device_id == device.id and t.kind is TicketKind.PREVENTIVE
        if (resolved := t.episode().entered(TicketState.RESOLVED)) is not None
    ]
    return max(
        [device.installed_on, *([device.last_inspection] if device.last_inspection else []), *done]
    )


def due_tasks(
    devices: Iterable[Device], tickets: Iterable[Ticket], now: datetime, config: ScheduleConfig
) -> list[ScheduledTask]:
    """Tasks to open at ``now``; never one already covered by an existing ticket."""
    tickets = list(tickets)
    open_preventive = {t.device_id for t in tickets if t.is_open and t.rule_id == PREVENTIVE_RULE}
    existing_rules = {(t.device_id, t.rule_id) for t in tickets}
    tasks: list[ScheduledTask] = []
    for device in sorted(devices, key=lambda d: d.id):
        today = config.local_day(device.site_id, now)
        if device.kind in config.inspected_kinds and device.id not in open_preventive:
            last = last_inspection(device, tickets, config)
            due = last + config.inspection_interval
            if today > due:
                tasks.append(
                    ScheduledTask(
                        TicketKind.PREVENTIVE,
                        device.id,
                        PREVENTIVE_RULE,
                        due,
                        f"last inspection {last.isoformat()} is {(today - last).days} days ago",
                    )
                )
        if (rule := warranty_rule(device)) is not None and device.warranty_end is not None:
            notice = device.warranty_end - config.warranty_notice
            late = device.warranty_end + config.warranty_grace
            if notice <= today <= late and (device.id, rule) not in existing_rules:
                left = (device.warranty_end - today).days
                tasks.append(
                    ScheduledTask(
                        TicketKind.WARRANTY,
                        device.id,
                        rule,
                        notice,
                        f"warranty ends {device.warranty_end.isoformat()} "
                        + (f"in {left} days" if left >= 0 else f"{-left} days ago"),
                    )
                )
    return tasks


def ticket_for(task: ScheduledTask, ticket_id: str, at: datetime) -> Ticket:
    """The general-tier ticket that carries out ``task``."""
    return new_ticket(
        ticket_id,
        task.device_id,
        Tier.GENERAL,
        at,
        rule_id=task.rule_id,
        kind=task.kind,
        title=task.reason,
    )
