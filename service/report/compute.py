"""The numbers of the half-yearly hospital report, from store data; pure, no formatting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from contract import AlertEvent, AlertTransition, Severity
from service.compensation import ServiceCredit
from service.kpis import (
    CORRECTIVE,
    Attainment,
    FailureRate,
    InstalledDevice,
    Problem,
    Rate,
    attainment,
    first_time_fix,
    problem_database,
)
from service.model import Site, Ticket, Tier
from service.report.period import EPOCH, epoch_us, months_of, utc_period
from service.report.rates import median_rate, period_rates_by_age, period_rates_by_model
from service.report.warranty import WarrantyAdvice, WarrantyAdviceConfig, warranty_advice
from service.sla import Clock, SlaConfig


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """Mean follow-up score (1-5) and how many tickets gave one."""

    mean: float
    responses: int


@dataclass(frozen=True, slots=True)
class Month:
    """One calendar month of the period."""

    first_day: date
    tickets: Mapping[Tier, int]  # opened in the month, by tier
    alerts: Mapping[Severity, int] | None  # raised in the month; None: no alert history
    sla: Mapping[Clock, tuple[int, int]]  # (met, decided) of the tickets opened in the month


@dataclass(frozen=True, slots=True)
class HospitalReport:
    """Everything the half-yearly report of one hospital shows, for [start, end)."""

    site: Site
    start: datetime
    end: datetime
    sla: SlaConfig
    warranty: WarrantyAdviceConfig
    devices: int  # installed before the period's end
    alerts_raised: int | None  # None: no alert history was supplied
    tickets_opened: int
    respond: Attainment
    resolve: Attainment
    first_time_fix: Rate
    satisfaction: Satisfaction | None
    months: tuple[Month, ...]
    model_rates: tuple[FailureRate, ...]
    age_rates: tuple[FailureRate, ...]
    model_median: float | None
    advice: tuple[WarrantyAdvice, ...]
    problems: tuple[Problem, ...]
    audit_head: str
    credits: tuple[ServiceCredit, ...] = ()  # service credits of breaches in the period

    def credit_totals(self) -> dict[str, tuple[int, int]]:
        """Per currency: how many credits and their sum in minor units."""
        totals: dict[str, tuple[int, int]] = {}
        for c in self.credits:
            n, total = totals.get(c.currency, (0, 0))
            totals[c.currency] = (n + 1, total + c.amount_minor)
        return dict(sorted(totals.items()))


def _raised(
    alerts: Iterable[AlertEvent] | None, ids: set[str], start: datetime, end: datetime
) -> list[AlertEvent] | None:
    """Alerts raised on ``ids`` in [start, end); None when there is no alert history."""
    if alerts is None:
        return None
    low, high = epoch_us(start), epoch_us(end)
    return [
        a
        for a in alerts
        if a.device_id in ids and a.transition is AlertTransition.RAISED and low <= a.at_us < high
    ]


def _months(
    start: datetime,
    end: datetime,
    period: Sequence[Ticket],
    raised: Sequence[AlertEvent] | None,
    config: SlaConfig,
) -> tuple[Month, ...]:
    """Per month: tickets opened by tier, alerts raised by severity, SLA met/decided."""
    firsts = months_of(start, end)

    def same_month(at: datetime, first: date) -> bool:
        return (at.year, at.month) == (first.year, first.month)

    months = []
    for first in firsts:
        opened = [t for t in period if same_month(t.opened_at, first)]
        alerts = None
        if raised is not None:
            mine = [a for a in raised if same_month(EPOCH + timedelta(microseconds=a.at_us), first)]
            alerts = {s: sum(a.severity is s for a in mine) for s in Severity}
        judged = {c: attainment(opened, c, end, config) for c in Clock}
        months.append(
            Month(
                first_day=first,
                tickets={tier: sum(t.tier is tier for t in opened) for tier in Tier},
                alerts=alerts,
                sla={c: (a.met, a.decided) for c, a in judged.items()},
            )
        )
    return tuple(months)


def compute_report(
    site: Site,
    devices: Iterable[InstalledDevice],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: SlaConfig,
    audit_head: str = "",
    *,
    alerts: Iterable[AlertEvent] | None = None,
    warranty: WarrantyAdviceConfig | None = None,
    credits: Iterable[ServiceCredit] = (),
) -> HospitalReport:
    """The report of ``site`` for [start, end), judged as of ``end``.

    ``alerts`` are the alert events of any devices (those of the site's are used); None means no
    alert history is available, which the report keeps apart from "no alerts". ``credits``
    are service credits of any site: those of this site whose breach lies in the period count.
    """
    start, end = utc_period(start, end)
    config = config.for_site(site.id)  # its tickets keep the site's business calendar
    policy = warranty or WarrantyAdviceConfig()
    fleet = [d for d in devices if d.site_id == site.id and d.installed_on < end.date()]
    ids = {d.id for d in fleet}
    mine = [t for t in tickets if t.device_id in ids and t.opened_at < end]
    period = [t for t in mine if t.opened_at >= start]
    period_failures = [t for t in period if t.kind in CORRECTIVE]
    raised = _raised(alerts, ids, start, end)
    scores = [t.satisfaction for t in period if t.satisfaction is not None]
    model_rates = period_rates_by_model(fleet, period_failures, start, end)
    return HospitalReport(
        site=site,
        start=start,
        end=end,
        sla=config,
        warranty=policy,
        devices=len(fleet),
        alerts_raised=None if raised is None else len(raised),
        tickets_opened=len(period),
        respond=attainment(period, Clock.RESPOND, end, config),
        resolve=attainment(period, Clock.RESOLVE, end, config),
        first_time_fix=first_time_fix(period),
        satisfaction=Satisfaction(sum(scores) / len(scores), len(scores)) if scores else None,
        months=_months(start, end, period, raised, config),
        model_rates=tuple(model_rates),
        age_rates=tuple(period_rates_by_age(fleet, period_failures, start, end)),
        model_median=median_rate(model_rates),
        advice=tuple(warranty_advice(fleet, mine, start, end, policy)),
        problems=tuple(problem_database(fleet, period)),
        audit_head=audit_head,
        credits=tuple(
            sorted(
                (c for c in credits if c.site_id == site.id and start <= c.breach_at < end),
                key=lambda c: (c.breach_at, c.key),
            )
        ),
    )
