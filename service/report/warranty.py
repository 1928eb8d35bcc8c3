"""Extended-warranty advice: which warranties end soon after the period, and whether to extend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.kpis import CORRECTIVE, InstalledDevice
from service.model import Ticket
from service.report.period import add_months, utc_period
from service.report.rates import median_rate, period_rates_by_model


class WarrantyAdviceConfig(BaseModel):
    """Which warranties the report looks at and when it advises extending them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Warranties ending in [end of the period, end + horizon) are advised on; with six months
    # and half-yearly reports every warranty end falls in exactly one report.
    horizon_months: Annotated[int, Field(ge=1, le=120)] = 6
    # Extend when the device had more failures than this in the reporting period.
    max_failures: Annotated[int, Field(ge=0)] = 1


@dataclass(frozen=True, slots=True)
class WarrantyAdvice:
    """Advice for one device whose warranty ends soon after the reporting period."""

    device: InstalledDevice
    warranty_end: date
    failures: int  # corrective tickets opened in the period
    tickets: int  # tickets of any kind opened in the period
    history: tuple[Ticket, ...]  # corrective tickets opened before the period's end, oldest first
    model_rate: float | None  # the model's failures per device-year in the period
    fleet_median: float | None  # median of the per-model rates of the hospital's fleet
    extend: bool
    reasons: tuple[str, ...]


def _reasons(
    failed: int, rate: float | None, median: float | None, policy: WarrantyAdviceConfig
) -> tuple[str, ...]:
    reasons = []
    if failed > policy.max_failures:
        reasons.append(f"{failed} failures in the period (more than {policy.max_failures})")
    if rate is not None and median is not None and rate > median:
        reasons.append(f"model fails {rate:.2f} per device-year, fleet median {median:.2f}")
    return tuple(reasons)


def _advice(
    device: InstalledDevice,
    warranty_end: date,
    failures: Sequence[Ticket],
    counts: tuple[int, int],
    rates: tuple[float | None, float | None],
    policy: WarrantyAdviceConfig,
) -> WarrantyAdvice:
    """The advice for one device; ``counts`` = (failures, tickets) and ``rates`` = (model,
    median) in the period."""
    reasons = _reasons(counts[0], rates[0], rates[1], policy)
    history = sorted(
        (t for t in failures if t.device_id == device.id), key=lambda t: (t.opened_at, t.id)
    )
    return WarrantyAdvice(
        device=device,
        warranty_end=warranty_end,
        failures=counts[0],
        tickets=counts[1],
        history=tuple(history),
        model_rate=rates[0],
        fleet_median=rates[1],
        extend=bool(reasons),
        reasons=reasons,
    )


def warranty_advice(
    devices: Iterable[InstalledDevice],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: WarrantyAdviceConfig | None = None,
) -> list[WarrantyAdvice]:
    """Devices whose warranty ends in [end, end + horizon), each with its advice.

    Extend when the device had more than ``max_failures`` failures (alert or manual tickets)
    opened in [start, end), or when its model's failure rate in that period is above the median
    of the per-model rates of ``devices``. Sorted by warranty end, then device id.
    """
    start, end = utc_period(start, end)
    policy = config or WarrantyAdviceConfig()
    fleet = [d for d in devices if d.installed_on < end.date()]
    ids = {d.id for d in fleet}
    mine = [t for t in tickets if t.device_id in ids and t.opened_at < end]
    failures = [t for t in mine if t.kind in CORRECTIVE]
    period_failures = [t for t in failures if t.opened_at >= start]
    rates = period_rates_by_model(fleet, period_failures, start, end)
    rate_of: Mapping[str, float | None] = {r.group: r.per_device_year for r in rates}
    median = median_rate(rates)
    horizon = add_months(end.date(), policy.horizon_months)
    failed = Counter(t.device_id for t in period_failures)
    opened = Counter(t.device_id for t in mine if t.opened_at >= start)
    advice = [
        _advice(
            device,
            device.warranty_end,
            failures,
            (failed[device.id], opened[device.id]),
            (rate_of.get(device.model), median),
            policy,
        )
        for device in fleet
        if device.warranty_end is not None and end.date() <= device.warranty_end < horizon
    ]
    return sorted(advice, key=lambda a: (a.warranty_end, a.device.id))
