"""Service KPIs: SLA attainment, first-time fix, failure rates and the problem database; pure."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

from service.model import Device, Ticket, TicketKind, TicketState
from service.sla import Clock, SlaConfig, clock_status

_YEAR_DAYS = 365.25
CORRECTIVE = frozenset({TicketKind.ALERT, TicketKind.MANUAL})
DEFAULT_AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<1y", 0.0, 1.0),
    ("1-3y", 1.0, 3.0),
    ("3-5y", 3.0, 5.0),
    ("5y+", 5.0, float("inf")),
)


class InstalledDevice(Protocol):
    """What the failure rates and reports read of a device: a ``Device`` or a narrow store row."""

    @property
    def id(self) -> str: ...
    @property
    def site_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def installed_on(self) -> date: ...
    @property
    def warranty_end(self) -> date | None: ...


D = TypeVar("D", bound=InstalledDevice)


@dataclass(frozen=True, slots=True)
class Attainment:
    """How many decided tickets met one SLA clock, and the mean SLA time of those stopped."""

    clock: Clock
    decided: int
    met: int
    mean_elapsed: timedelta | None

    @property
    def percent(self) -> float | None:
        """Met as a percentage of decided; None when nothing is decided yet."""
        return 100.0 * self.met / self.decided if self.decided else None


@dataclass(frozen=True, slots=True)
class Rate:
    """A ratio with its parts, so reports can show 7/9 rather than a bare 77.8 %."""

    numerator: int
    denominator: int

    @property
    def percent(self) -> float | None:
        """Numerator as a percentage of denominator; None when there is nothing to count."""
        return 100.0 * self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True, slots=True)
class FailureRate:
    """Failures of one group of devices against its exposure in device-years."""

    group: str
    devices: int
    failures: int
    device_years: float

    @property
    def per_device_year(self) -> float | None:
        """Failures per device-year; None without exposure."""
        return self.failures / self.device_years if self.device_years > 0 else None


@dataclass(frozen=True, slots=True)
class Problem:
    """One row of the problem database: how often a fault hit a model."""

    model: str
    fault: str
    count: int
    devices: int


def attainment(
    tickets: Iterable[Ticket], clock: Clock, now: datetime, config: SlaConfig
) -> Attainment:
    """SLA attainment of ``clock``: tickets met (stopped in time) over tickets decided.

    A ticket is decided once its clock stopped or it breached; running clocks are left out.
    """
    decided = met = 0
    stopped_elapsed: list[timedelta] = []
    for ticket in tickets:
        status = clock_status(ticket, clock, now, config)
        if status.stopped_at is None and not status.breached:
            continue
        decided += 1
        met += not status.breached
        if status.stopped_at is not None:
            stopped_elapsed.append(status.elapsed)
    mean = sum(stopped_elapsed, timedelta()) / len(stopped_elapsed) if stopped_elapsed else None
    return Attainment(clock, decided, met, mean)


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """Follow-up scores (1-5): how many tickets were scored and their sum."""

    responses: int
    total: int

    @property
    def mean(self) -> float | None:
        """The mean score; None before the first follow-up."""
        return self.total / self.responses if self.responses else None


def satisfaction(tickets: Iterable[Ticket]) -> Satisfaction:
    """The follow-up scores of ``tickets`` (a reopened ticket's score is cleared until rescored)."""
    scores = [t.satisfaction for t in tickets if t.satisfaction is not None]
    return Satisfaction(len(scores), sum(scores))


def reopened(tickets: Iterable[Ticket]) -> Rate:
    """Tickets reopened at least once, of all tickets (the fix did not hold)."""
    tickets = list(tickets)
    return Rate(sum(1 for t in tickets if t.reopens), len(tickets))


def first_time_fix(tickets: Iterable[Ticket]) -> Rate:
    """Resolved corrective tickets fixed on the first site visit."""
    resolved = [
        t
        for t in tickets
        if t.kind in CORRECTIVE and t.episode().entered(TicketState.RESOLVED) is not None
    ]
    return Rate(sum(1 for t in resolved if t.site_visits == 1), len(resolved))


def years_between(start: date, end: date) -> float:
    """Whole days from ``start`` to ``end`` in years (none before ``start``)."""
    return max((end - start).days, 0) / _YEAR_DAYS


def _failures(tickets: Iterable[Ticket]) -> list[Ticket]:
    return [t for t in tickets if t.kind in CORRECTIVE]


def failure_rates(
    devices: Iterable[D],
    tickets: Iterable[Ticket],
    now: datetime,
    group: Callable[[D], str],
    *,
    exposed_from: date | None = None,
) -> list[FailureRate]:
    """Corrective tickets per device-year for each group of devices, sorted by group.

    Exposure counts from installation, or from ``exposed_from`` for devices installed before.
    """
    members: dict[str, list[D]] = defaultdict(list)
    group_of: dict[str, str] = {}
    for device in devices:
        key = group(device)
        members[key].append(device)
        group_of[device.id] = key
    failures = Counter(group_of[t.device_id] for t in _failures(tickets) if t.device_id in group_of)
    today = now.date()
    return [
        FailureRate(
            key,
            len(found),
            failures[key],
            sum(years_between(_exposed(d, exposed_from), today) for d in found),
        )
        for key, found in sorted(members.items())
    ]


def _exposed(device: InstalledDevice, since: date | None) -> date:
    """When ``device`` started counting exposure: its installation, or ``since`` if later."""
    return device.installed_on if since is None else max(device.installed_on, since)


def failure_rate_by_model(
    devices: Iterable[Device], tickets: Iterable[Ticket], now: datetime
) -> list[FailureRate]:
    """Failure rate per device model."""
    return failure_rates(devices, tickets, now, lambda d: d.model)


def failure_rate_by_batch(
    devices: Iterable[Device], tickets: Iterable[Ticket], now: datetime
) -> list[FailureRate]:
    """Failure rate per model and production lot (lots are only unique within a model)."""
    return failure_rates(devices, tickets, now, lambda d: f"{d.model}/{d.lot or 'unknown'}")


def failure_rate_by_age(
    devices: Iterable[InstalledDevice],
    tickets: Iterable[Ticket],
    now: datetime,
    bands: Sequence[tuple[str, float, float]] = DEFAULT_AGE_BANDS,
) -> list[FailureRate]:
    """Failure rate per device-age band: failures by age at opening over years spent in the band.

    Exposure is split across bands, so a five-year-old device adds a year to "<1y" and two each
    to "1-3y" and "3-5y": old devices cannot dilute the rate of young ones.
    """
    devices = list(devices)
    by_id = {d.id: d for d in devices}
    today = now.date()
    exposure: dict[str, float] = dict.fromkeys((b[0] for b in bands), 0.0)
    population: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for device in devices:
        age = years_between(device.installed_on, today)
        for label, low, high in bands:
            spent = max(min(age, high) - low, 0.0)
            exposure[label] += spent
            population[label] += spent > 0
    for ticket in _failures(tickets):
        owner = by_id.get(ticket.device_id)
        if owner is None:
            continue
        at_age = years_between(owner.installed_on, ticket.opened_at.date())
        band = next((b[0] for b in bands if b[1] <= at_age < b[2]), None)
        if band is not None:
            failures[band] += 1
    return [
        FailureRate(label, population[label], failures[label], exposure[label])
        for label, _, _ in bands
    ]


def problem_database(
    devices: Iterable[InstalledDevice], tickets: Iterable[Ticket]
) -> list[Problem]:
    """Model × fault type × frequency, most frequent first."""
    model_of = {d.id: d.model for d in devices}
    counts: Counter[tuple[str, str]] = Counter()
    hit: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ticket in _failures(tickets):
        model = model_of.get(ticket.device_id)
        if model is None:
            continue
        key = (model, ticket.fault or ticket.rule_id or "unspecified")
        counts[key] += 1
        hit[key].add(ticket.device_id)
    rows = [Problem(m, f, n, len(hit[(m, f)])) for (m, f), n in counts.items()]
    return sorted(rows, key=lambda p: (-p.count, p.model, p.fault))
