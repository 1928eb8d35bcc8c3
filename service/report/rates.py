"""Failure rates over the reporting period: exposure clipped to it, failures counted in it."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from service.kpis import (
    DEFAULT_AGE_BANDS,
    FailureRate,
    InstalledDevice,
    failure_rate_by_age,
    failure_rates,
    years_between,
)
from service.model import Ticket


def period_rates_by_model(
    fleet: Sequence[InstalledDevice], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    """Failures per device-year of each model, counting only device-years in [start, end)."""
    # kpis count exposure from installation; counting it from the period start instead turns it
    # into the device-years spent in the period, matching failures counted in the period.
    return failure_rates(fleet, failures, end, lambda d: d.model, exposed_from=start.date())


def period_rates_by_age(
    fleet: Sequence[InstalledDevice], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    """Failures per device-year of each age band, counting only device-years in [start, end)."""
    # Device-years spent in each band during the period = exposure up to end - up to start,
    # with ``failure_rate_by_age``'s arithmetic, one device at a time.
    exposure: defaultdict[str, float] = defaultdict(float)
    population: Counter[str] = Counter()
    for device in fleet:
        before = years_between(device.installed_on, start.date())
        after = years_between(device.installed_on, end.date())
        for label, low, high in DEFAULT_AGE_BANDS:
            spent = max(min(after, high) - low, 0.0) - max(min(before, high) - low, 0.0)
            exposure[label] += spent
            population[label] += spent > 0
    return [
        FailureRate(r.group, population[r.group], r.failures, exposure[r.group])
        for r in failure_rate_by_age(fleet, failures, end)
    ]


def median_rate(rates: Iterable[FailureRate]) -> float | None:
    """The median of the known per-device-year rates; None if no group had exposure."""
    known = [r.per_device_year for r in rates if r.per_device_year is not None]
    return statistics.median(known) if known else None
