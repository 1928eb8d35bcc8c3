"""SLA clocks of one ticket, and the service KPIs over what the caller sees."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import CallerDep, Id, NowDep, SlaDep, StaffDep, StoreDep
from service.api.schemas import (
    AttainmentOut,
    CreditTotalOut,
    FirstTimeFix,
    Kpis,
    ModelFailureRate,
    ProblemOut,
    SatisfactionOut,
    SlaClockOut,
    TicketSla,
)
from service.api.scope import scope_of, visible_site, visible_ticket
from service.api.text import ID_PATTERN
from service.kpis import (
    attainment,
    failure_rate_by_model,
    first_time_fix,
    problem_database,
    reopened,
    satisfaction,
)
from service.model import Device, Ticket
from service.sla import Clock, ClockStatus, SlaConfig, clock_status, sla_status
from service.store.aggregates import ClockTotals, CreditTotals, KpiFacts, ModelTotals
from service.store.queries import Scope

_YEAR_DAYS = 365.25
_ONE_US = timedelta(microseconds=1)

router = APIRouter(tags=["kpis"])


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def clock_out(c: ClockStatus) -> SlaClockOut:
    """One SLA clock as the API shows it."""
    return SlaClockOut.model_construct(
        deadline=c.deadline,
        remaining_s=c.remaining.total_seconds(),
        breached=c.breached,
        paused=c.paused,
        stopped_at=c.stopped_at,
    )


@router.get("/tickets/{ticket_id}/sla")
def ticket_sla(
    who: CallerDep, store: StoreDep, sla: SlaDep, now: NowDep, ticket_id: Id
) -> TicketSla:
    """Deadline, time left and state of both SLA clocks of one ticket."""
    status_ = sla_status(visible_ticket(store, who, ticket_id), now, sla)
    return TicketSla(
        ticket_id=status_.ticket_id,
        tier=status_.tier,
        breached=status_.breached,
        respond=clock_out(status_.respond),
        resolve=clock_out(status_.resolve),
    )


def _attainment(
    tickets: Sequence[Ticket], clock: Clock, now: datetime, sla: SlaConfig
) -> AttainmentOut:
    a = attainment(tickets, clock, now, sla)
    return AttainmentOut(
        decided=a.decided,
        met=a.met,
        percent=_pct(a.percent),
        mean_elapsed_s=a.mean_elapsed.total_seconds() if a.mean_elapsed else None,
    )


def _satisfaction(responses: int, total: int) -> SatisfactionOut:
    mean = round(total / responses, 3) if responses else None
    return SatisfactionOut(responses=responses, mean=mean)


def _credits(totals: Iterable[CreditTotals]) -> list[CreditTotalOut]:
    return [
        CreditTotalOut(currency=c.currency, credits=c.credits, amount_minor=c.amount_minor)
        for c in totals
    ]


def compute_kpis(
    fleet: Sequence[Device],
    tickets: Sequence[Ticket],
    now: datetime,
    sla: SlaConfig,
    credits: Sequence[CreditTotals] = (),
) -> Kpis:
    """The KPIs of ``fleet`` and its ``tickets`` (and its service ``credits``) as of ``now``."""
    ftf = first_time_fix(tickets)
    scores = satisfaction(tickets)
    return Kpis(
        reopened=reopened(tickets).numerator,
        satisfaction=_satisfaction(scores.responses, scores.total),
        service_credits=_credits(credits),
        at=now,
        tickets=len(tickets),
        respond_attainment=_attainment(tickets, Clock.RESPOND, now, sla),
        resolve_attainment=_attainment(tickets, Clock.RESOLVE, now, sla),
        first_time_fix=FirstTimeFix(
            fixed_first_time=ftf.numerator, resolved=ftf.denominator, percent=_pct(ftf.percent)
        ),
        failure_rate_by_model=[
            ModelFailureRate(
                model=r.group,
                devices=r.devices,
                failures=r.failures,
                device_years=round(r.device_years, 4),
                per_device_year=r.per_device_year,
            )
            for r in failure_rate_by_model(fleet, tickets, now)
        ],
        problems=[
            ProblemOut(model=p.model, fault=p.fault, count=p.count, devices=p.devices)
            for p in problem_database(fleet, tickets)
        ],
    )


def _later(tickets: Iterable[Ticket], clock: Clock, now: datetime, sla: SlaConfig) -> ClockTotals:
    """``attainment``'s sums over tickets the SQL aggregate leaves to Python."""
    decided = met = stopped = 0
    elapsed = timedelta()
    for ticket in tickets:
        status_ = clock_status(ticket, clock, now, sla)
        if status_.stopped_at is None and not status_.breached:
            continue
        decided += 1
        met += not status_.breached
        if status_.stopped_at is not None:
            stopped += 1
            elapsed += status_.elapsed
    return ClockTotals(decided, met, stopped, elapsed // _ONE_US)


def _attained(sql: ClockTotals, later: ClockTotals) -> AttainmentOut:
    decided, met = sql.decided + later.decided, sql.met + later.met
    stopped, total = sql.stopped + later.stopped, sql.elapsed_us + later.elapsed_us
    mean = timedelta(microseconds=total) / stopped if stopped else None
    return AttainmentOut(
        decided=decided,
        met=met,
        percent=_pct(100.0 * met / decided if decided else None),
        mean_elapsed_s=mean.total_seconds() if mean else None,
    )


def _model_rate(totals: ModelTotals) -> ModelFailureRate:
    years = totals.device_days / _YEAR_DAYS
    return ModelFailureRate(
        model=totals.model,
        devices=totals.devices,
        failures=totals.failures,
        device_years=round(years, 4),
        per_device_year=totals.failures / years if years > 0 else None,
    )


def kpis_from_facts(facts: KpiFacts, now: datetime, sla: SlaConfig) -> Kpis:
    """The KPIs from the store's aggregates; the same numbers as ``compute_kpis``."""
    later = list(facts.later)
    ftf = first_time_fix(later)
    fixed, resolved = facts.fixed_first_time + ftf.numerator, facts.resolved + ftf.denominator
    scores = satisfaction(later)
    return Kpis(
        reopened=facts.reopened + reopened(later).numerator,
        satisfaction=_satisfaction(
            facts.scored + scores.responses, facts.score_total + scores.total
        ),
        service_credits=_credits(facts.credits),
        at=now,
        tickets=facts.tickets + len(later),
        respond_attainment=_attained(facts.respond, _later(later, Clock.RESPOND, now, sla)),
        resolve_attainment=_attained(facts.resolve, _later(later, Clock.RESOLVE, now, sla)),
        first_time_fix=FirstTimeFix(
            fixed_first_time=fixed,
            resolved=resolved,
            percent=_pct(100.0 * fixed / resolved if resolved else None),
        ),
        failure_rate_by_model=[_model_rate(m) for m in facts.models],
        problems=[
            ProblemOut(model=p.model, fault=p.fault, count=p.count, devices=p.devices)
            for p in facts.problems
        ],
    )


@router.get("/kpis")
def kpis(
    who: StaffDep,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    site_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Kpis:
    """SLA attainment, first-time fix, failure rates, problems, follow-up satisfaction and
    service credits over what the caller sees (or over one site of it), summed by the database
    over those rows only."""
    scope = scope_of(who)
    if site_id is not None:
        visible_site(store, who, site_id)  # 404 for a site not theirs
        scope = Scope(site_id=site_id)
    return kpis_from_facts(store.kpi_facts(scope, now), now, sla)
