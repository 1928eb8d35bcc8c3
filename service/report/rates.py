"""Failure rates over the reporting period: exposure clipped to it, failures counted in it."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from service.kpis import FailureRate, failure_rate_by_age, failure_rate_by_model
from service.model import Device, Ticket


def period_rates_by_model(
    fleet: Sequence[Device], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    """Failures per device-year of each model, counting only device-years in [start, end)."""
    # kpis count exposure from installation; clipping installation to the period start turns it
    # into the device-years spent in the period, matching failures counted in the period.
    clipped = [
        d.model_copy(update={"installed_on": max(d.installed_on, start.date())}) for d in fleet
    ]
    return failure_rate_by_model(clipped, failures, end)


def period_rates_by_age(
    fleet: Sequence[Device], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    """Failures per device-year of each age band, counting only device-years in [start, end)."""
    # Device-years spent in each band during the period = exposure up to end - up to start.
    exposure: defaultdict[str, float] = defaultdict(float)
    population: Counter[str] = Counter()
    for device in fleet:
        before = failure_rate_by_age([device], (), start)
        after = failure_rate_by_age([device], (), end)
        for old, new in zip(before, after, strict=True):
            spent = new.device_years - old.device_years
            exposure[new.group] += spent
            population[new.group] += spent > 0
    return [
        FailureRate(r.group, population[r.group], r.failures, exposure[r.group])
        for r in failure_rate_by_age(fleet, failures, end)
    ]


def median_rate(rates: Iterable[FailureRate]) -> float | None:
    """The median of the known per-device-year rates; None if no group had exposure."""
    known = [r.per_device_year for r in rates if r.per_device_year is not None]
    return statistics.median(known) if known else None
