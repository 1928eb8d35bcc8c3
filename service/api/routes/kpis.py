"""SLA clocks of one ticket, and the service KPIs over what the caller sees."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter

from service.api.deps import CallerDep, Id, NowDep, SlaDep, StaffDep, StoreDep
from service.api.schemas import (
    AttainmentOut,
    FirstTimeFix,
    Kpis,
    ModelFailureRate,
    ProblemOut,
    SlaClockOut,
    TicketSla,
)
from service.api.scope import visible_devices, visible_ticket
from service.kpis import attainment, failure_rate_by_model, first_time_fix, problem_database
from service.model import Device, Ticket
from service.sla import Clock, ClockStatus, SlaConfig, sla_status

router = APIRouter(tags=["kpis"])


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _clock(c: ClockStatus) -> SlaClockOut:
    return SlaClockOut(
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
        respond=_clock(status_.respond),
        resolve=_clock(status_.resolve),
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


def compute_kpis(
    fleet: Sequence[Device], tickets: Sequence[Ticket], now: datetime, sla: SlaConfig
) -> Kpis:
    """The KPIs of ``fleet`` and its ``tickets`` as of ``now``."""
    ftf = first_time_fix(tickets)
    return Kpis(
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


@router.get("/kpis")
def kpis(who: StaffDep, store: StoreDep, sla: SlaDep, now: NowDep) -> Kpis:
    """SLA attainment, first-time fix, failure rates and problems over what the caller sees."""
    fleet = visible_devices(store, who)
    ids = {d.id for d in fleet}
    return compute_kpis(fleet, [t for t in store.tickets() if t.device_id in ids], now, sla)
