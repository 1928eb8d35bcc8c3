"""SLA clocks: respond (until accepted) and resolve (until resolved), paused while waiting.

Everything here is pure: ``now`` is always passed in. Business-hours tiers count in the
calendar of the ticket's site (its time zone and holidays); which site a device stands in is
asked of the ``site_of`` lookup a running service binds with ``SlaConfig.located``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract import Severity
from service.business_hours import BusinessCalendar
from service.model import Device, Ticket, TicketState, Tier

# Device id → id of the site it stands in (None: unknown device).
SiteOf = Callable[[str], str | None]


class DeviceDirectory(Protocol):
    """Where devices are looked up (a ServiceStore is one)."""

    def device(self, device_id: str) -> Device | None:
        """The device, or None when it is not installed."""


class Clock(StrEnum):
    """The two SLA clocks every ticket runs."""

    RESPOND = "respond"
    RESOLVE = "resolve"


_STOPS = {Clock.RESPOND: TicketState.ACCEPTED, Clock.RESOLVE: TicketState.RESOLVED}


class TierPolicy(BaseModel):
    """Targets of one tier; ``business_hours`` counts only the calendar's opening hours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    respond: timedelta
    resolve: timedelta
    business_hours: bool = False
    # An undispatched ticket escalates to the desk after this much SLA time (None: respond).
    undispatched: timedelta | None = None

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.respond <= timedelta() or self.resolve <= timedelta():
            raise ValueError("SLA targets must be positive")
        if self.undispatched is not None and self.undispatched <= timedelta():
            raise ValueError("the undispatched escalation time must be positive")
        return self


def _default_tiers() -> dict[Tier, TierPolicy]:
    return {
        Tier.URGENT: TierPolicy(respond=timedelta(hours=2), resolve=timedelta(hours=24)),
        Tier.GENERAL: TierPolicy(respond=timedelta(hours=4), resolve=timedelta(hours=48)),
    }


class SlaConfig(BaseModel):
    """SLA configuration: tier targets, which severity is urgent, and the business calendars.

    ``calendar`` is the default; ``site_calendars`` holds a calendar per site id (each in the
    site's time zone, with its holidays), used once ``site_of`` says where a device stands.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: dict[Tier, TierPolicy] = Field(default_factory=_default_tiers, validate_default=True)
    urgent_from: Severity = Severity.CRITICAL
    calendar: BusinessCalendar | None = None
    site_calendars: dict[str, BusinessCalendar] = Field(default_factory=dict)
    site_of: SiteOf | None = Field(default=None, exclude=True, repr=False)

    @field_validator("tiers", mode="after")
    @classmethod
    def _fill_defaults(cls, tiers: dict[Tier, TierPolicy]) -> dict[Tier, TierPolicy]:
        # Missing tiers fall back to the contractual defaults rather than failing at 3 a.m.
        return {**_default_tiers(), **tiers}

    @model_validator(mode="after")
    def _calendar_present(self) -> Self:
        if self.calendar is None and any(p.business_hours for p in self.tiers.values()):
            raise ValueError(
                "a tier counts business hours but no calendar is configured "
                "for sites without their own"
            )
        return self

    def policy(self, tier: Tier) -> TierPolicy:
        """The targets of ``tier``."""
        return self.tiers[tier]

    def target(self, tier: Tier, clock: Clock) -> timedelta:
        """How much SLA time ``clock`` gets under ``tier``."""
        policy = self.tiers[tier]
        return policy.respond if clock is Clock.RESPOND else policy.resolve

    def undispatched(self, tier: Tier) -> timedelta:
        """How long a ticket of ``tier`` may wait for an engineer before the desk is told."""
        policy = self.tiers[tier]
        return policy.undispatched if policy.undispatched is not None else policy.respond

    def located(self, devices: DeviceDirectory) -> SlaConfig:
        """This configuration, finding each ticket's site through ``devices``."""

        def site_of(device_id: str) -> str | None:
            device = devices.device(device_id)
            return device.site_id if device is not None else None

        return self.model_copy(update={"site_of": site_of})

    def for_site(self, site_id: str) -> SlaConfig:
        """This configuration for tickets all at ``site_id`` (a hospital's report)."""
        return self.model_copy(update={"site_of": lambda _device_id: site_id})

    def site_calendar(self, site_id: str | None) -> BusinessCalendar | None:
        """The business calendar of ``site_id``; the default one for unknown or unlisted sites."""
        if site_id is None:
            return self.calendar
        return self.site_calendars.get(site_id, self.calendar)

    def counting(self, tier: Tier, site_id: str | None = None) -> BusinessCalendar | None:
        """The calendar SLA time under ``tier`` counts in at ``site_id``; None: around the clock."""
        return self.site_calendar(site_id) if self.policy(tier).business_hours else None

    def counting_for(self, ticket: Ticket) -> BusinessCalendar | None:
        """The calendar ``ticket``'s SLA time counts in: its device's site's, or None (24/7)."""
        if not self.policy(ticket.tier).business_hours:
            return None  # no site lookup when the tier counts around the clock
        site = self.site_of(ticket.device_id) if self.site_of is not None else None
        return self.site_calendar(site)

    def measure(
        self, tier: Tier, start: datetime, end: datetime, *, site_id: str | None = None
    ) -> timedelta:
        """SLA time in [start, end) under ``tier``'s counting rule at ``site_id``."""
        return elapsed_in(self.counting(tier, site_id), start, end)

    def add(
        self, tier: Tier, start: datetime, duration: timedelta, *, site_id: str | None = None
    ) -> datetime:
        """When ``duration`` of SLA time under ``tier`` at ``site_id`` is past ``start``."""
        return advance_in(self.counting(tier, site_id), start, duration)


def elapsed_in(calendar: BusinessCalendar | None, start: datetime, end: datetime) -> timedelta:
    """SLA time in [start, end): business time in ``calendar``, or wall time without one."""
    if calendar is not None:
        return calendar.business_time(start, end)
    return max(end - start, timedelta())


def advance_in(calendar: BusinessCalendar | None, start: datetime, duration: timedelta) -> datetime:
    """When ``duration`` of SLA time (business time in ``calendar``) has passed since ``start``."""
    if calendar is not None:
        return calendar.add(start, duration)
    return start + duration


def tier_for(severity: Severity, config: SlaConfig) -> Tier:
    """The tier an alert of ``severity`` opens (CRITICAL → urgent by default)."""
    return Tier.URGENT if severity >= config.urgent_from else Tier.GENERAL


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """One clock of one ticket at ``now``; ``remaining`` goes negative once overdue."""

    clock: Clock
    target: timedelta
    elapsed: timedelta
    remaining: timedelta
    deadline: datetime | None  # None while paused: the deadline moves with the pause
    stopped_at: datetime | None
    paused: bool
    breached: bool


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """Both clocks of a ticket at one instant."""

    ticket_id: str
    tier: Tier
    respond: ClockStatus
    resolve: ClockStatus

    @property
    def breached(self) -> bool:
        """True when either clock is breached."""
        return self.respond.breached or self.resolve.breached


@dataclass(frozen=True, slots=True)
class Breach:
    """A clock of a ticket ran out at ``at``."""

    ticket_id: str
    clock: Clock
    tier: Tier
    at: datetime


def _segments(ticket: Ticket, clock: Clock) -> list[tuple[datetime, datetime | None]]:
    """Intervals in which the clock runs; the last may be open-ended (None)."""
    stop = ticket.entered(_STOPS[clock])
    history = ticket.history
    segments: list[tuple[datetime, datetime | None]] = []
    for i, change in enumerate(history):
        if change.state is _STOPS[clock]:
            break
        end = history[i + 1].at if i + 1 < len(history) else None
        if change.state is not TicketState.WAITING_FOR_CUSTOMER:
            segments.append((change.at, end))
    if stop is not None:
        # Past the stop the clock is imagined running, only to locate where the deadline was.
        segments.append((stop, None))
    return segments


def deadline(ticket: Ticket, clock: Clock, config: SlaConfig) -> datetime | None:
    """When ``clock`` runs out given the pauses so far; None while paused with time left."""
    return _deadline(ticket.episode(), clock, config, config.counting_for(ticket))


def _deadline(
    ticket: Ticket, clock: Clock, config: SlaConfig, calendar: BusinessCalendar | None
) -> datetime | None:
    left = config.target(ticket.tier, clock)
    for start, end in _segments(ticket, clock):
        if end is None:
            return advance_in(calendar, start, left)
        spent = elapsed_in(calendar, start, end)
        if spent >= left:
            return advance_in(calendar, start, left)
        left -= spent
    return None


def clock_status(ticket: Ticket, clock: Clock, now: datetime, config: SlaConfig) -> ClockStatus:
    """State of one clock at ``now`` (of the ticket's current episode, if it was reopened)."""
    ticket = ticket.episode()
    target = config.target(ticket.tier, clock)
    stopped = ticket.entered(_STOPS[clock])
    until = min(now, stopped) if stopped is not None else now
    calendar = config.counting_for(ticket)
    elapsed = timedelta()
    for start, end in _segments(ticket, clock):
        if start >= until:
            break
        elapsed += elapsed_in(calendar, start, until if end is None else min(end, until))
    due = _deadline(ticket, clock, config, calendar)
    paused = stopped is None and ticket.state is TicketState.WAITING_FOR_CUSTOMER
    breached = due is not None and until > due
    return ClockStatus(clock, target, elapsed, target - elapsed, due, stopped, paused, breached)


def sla_status(ticket: Ticket, now: datetime, config: SlaConfig) -> SlaStatus:
    """Both clocks of ``ticket`` at ``now``."""
    return SlaStatus(
        ticket.id,
        ticket.tier,
        clock_status(ticket, Clock.RESPOND, now, config),
        clock_status(ticket, Clock.RESOLVE, now, config),
    )


def breach_instant(ticket: Ticket, clock: Clock, config: SlaConfig) -> datetime | None:
    """When ``clock`` was (or will be, absent new pauses) breached; None if met or paused."""
    ticket = ticket.episode()
    due = deadline(ticket, clock, config)
    if due is None:
        return None
    stopped = ticket.entered(_STOPS[clock])
    if stopped is not None and stopped <= due:
        return None
    # A tier upgrade can pull the deadline into the past; the breach happens at the upgrade.
    return max(due, ticket.tier_since)


def breaches_between(
    tickets: Iterable[Ticket], start: datetime, end: datetime, config: SlaConfig
) -> list[Breach]:
    """Breaches whose instant lies in [start, end), in time order; call with adjacent windows.

    A clock is breached only once its deadline has *passed*: stopping exactly at the deadline
    meets it, so a window ending exactly at the deadline reports nothing yet — the next one does.
    """
    found = []
    for ticket in tickets:
        for clock in Clock:
            at = breach_instant(ticket, clock, config)
            if at is not None and start <= at < end:
                found.append(Breach(ticket.id, clock, ticket.tier, at))
    return sorted(found, key=lambda b: (b.at, b.ticket_id, b.clock))
