"""SLA clocks: respond (until accepted) and resolve (until resolved), paused while waiting.

Everything here is pure: ``now`` is always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract import Severity
from service.business_hours import BusinessCalendar
from service.model import Ticket, TicketState, Tier


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

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.respond <= timedelta() or self.resolve <= timedelta():
            raise ValueError("SLA targets must be positive")
        return self


def _default_tiers() -> dict[Tier, TierPolicy]:
    return {
        Tier.URGENT: TierPolicy(respond=timedelta(hours=2), resolve=timedelta(hours=24)),
        Tier.GENERAL: TierPolicy(respond=timedelta(hours=4), resolve=timedelta(hours=48)),
    }


class SlaConfig(BaseModel):
    """SLA configuration: tier targets, which severity is urgent, and the business calendar."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: dict[Tier, TierPolicy] = Field(default_factory=_default_tiers, validate_default=True)
    urgent_from: Severity = Severity.CRITICAL
    calendar: BusinessCalendar | None = None

    @field_validator("tiers", mode="after")
    @classmethod
    def _fill_defaults(cls, tiers: dict[Tier, TierPolicy]) -> dict[Tier, TierPolicy]:
        # Missing tiers fall back to the contractual defaults rather than failing at 3 a.m.
        return {**_default_tiers(), **tiers}

    @model_validator(mode="after")
    def _calendar_present(self) -> Self:
        if self.calendar is None and any(p.business_hours for p in self.tiers.values()):
            raise ValueError("a tier counts business hours but no calendar is configured")
        return self

    def policy(self, tier: Tier) -> TierPolicy:
        """The targets of ``tier``."""
        return self.tiers[tier]

    def target(self, tier: Tier, clock: Clock) -> timedelta:
        """How much SLA time ``clock`` gets under ``tier``."""
        policy = self.tiers[tier]
        return policy.respond if clock is Clock.RESPOND else policy.resolve

    def measure(self, tier: Tier, start: datetime, end: datetime) -> timedelta:
        """SLA time in [start, end) under ``tier``'s counting rule."""
        if self.calendar is not None and self.policy(tier).business_hours:
            return self.calendar.business_time(start, end)
        return max(end - start, timedelta())

    def add(self, tier: Tier, start: datetime, duration: timedelta) -> datetime:
        """When ``duration`` of SLA time under ``tier`` has passed since ``start``."""
        if self.calendar is not None and self.policy(tier).business_hours:
            return self.calendar.add(start, duration)
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
    left = config.target(ticket.tier, clock)
    for start, end in _segments(ticket, clock):
        if end is None:
            return config.add(ticket.tier, start, left)
        spent = config.measure(ticket.tier, start, end)
        if spent >= left:
            return config.add(ticket.tier, start, left)
        left -= spent
    return None


def clock_status(ticket: Ticket, clock: Clock, now: datetime, config: SlaConfig) -> ClockStatus:
    """State of one clock at ``now``."""
    target = config.target(ticket.tier, clock)
    stopped = ticket.entered(_STOPS[clock])
    until = min(now, stopped) if stopped is not None else now
    elapsed = timedelta()
    for start, end in _segments(ticket, clock):
        if start >= until:
            break
        elapsed += config.measure(ticket.tier, start, until if end is None else min(end, until))
    due = deadline(ticket, clock, config)
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
    """Breaches that happen in (start, end], in time order; call with adjacent windows."""
    found = []
    for ticket in tickets:
        for clock in Clock:
            at = breach_instant(ticket, clock, config)
            if at is not None and start < at <= end:
                found.append(Breach(ticket.id, clock, ticket.tier, at))
    return sorted(found, key=lambda b: (b.at, b.ticket_id, b.clock))
