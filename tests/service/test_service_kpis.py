"""KPIs: SLA attainment, first-time fix, failure rates and the problem database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from service.kpis import (
    attainment,
    failure_rate_by_age,
    failure_rate_by_batch,
    failure_rate_by_model,
    first_time_fix,
    problem_database,
)
from service.lifecycle import Arrive, Depart, Resolve
from service.model import TicketKind
from service.sla import Clock, SlaConfig
from tests.service.factories import T0, accepted, device, hours, on_site, ticket, walk

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_response_attainment_counts_only_decided_tickets() -> None:
    met = accepted(ticket("a"), T0 + hours(1))
    late = accepted(ticket("b"), T0 + hours(3))
    breached_open = ticket("c")
    running = ticket("d", at=T0 + hours(9))
    result = attainment(
        [met, late, breached_open, running], Clock.RESPOND, T0 + hours(10), SlaConfig()
    )
    assert (result.decided, result.met) == (3, 1)
    assert result.percent == pytest.approx(100 / 3)
    assert result.mean_elapsed == hours(2)


def test_attainment_of_nothing_is_none() -> None:
    assert attainment([], Clock.RESOLVE, T0, SlaConfig()).percent is None


def test_first_time_fix_rate() -> None:
    first = walk(on_site(ticket("a"), T0), (Resolve("probe"), T0 + hours(1)))
    second = walk(
        on_site(ticket("b"), T0),
        (Depart("part"), T0 + hours(1)),
        (Arrive(), T0 + hours(2)),
        (Resolve("probe"), T0 + hours(3)),
    )
    preventive = walk(on_site(ticket("c", kind=TicketKind.PREVENTIVE), T0), (Resolve("pm"), T0))
    rate = first_time_fix([first, second, preventive, ticket("open")])
    assert (rate.numerator, rate.denominator) == (1, 2)


def fleet() -> list:  # type: ignore[type-arg]
    return [
        device("a1", model="A", lot="L1", installed_on=date(2025, 1, 1)),
        device("a2", model="A", lot="L2", installed_on=date(2025, 1, 1)),
        device("b1", model="B", lot="L1", installed_on=date(2021, 1, 1)),
    ]


def failures() -> list:  # type: ignore[type-arg]
    return [
        walk(on_site(ticket("t1", "a1"), T0), (Resolve("probe"), T0)),
        ticket("t2", "a1", rule_id="battery"),
        ticket("t3", "b1", rule_id="probe-health"),
        ticket("t4", "a2", kind=TicketKind.PREVENTIVE),  # not a failure
    ]


def test_failure_rate_by_model() -> None:
    rows = {r.group: r for r in failure_rate_by_model(fleet(), failures(), NOW)}
    assert (rows["A"].devices, rows["A"].failures) == (2, 2)
    assert rows["A"].device_years == pytest.approx(2 * 365 / 365.25)
    assert rows["B"].failures == 1 and rows["B"].per_device_year == pytest.approx(
        1 / rows["B"].device_years
    )


def test_failure_rate_by_batch_keeps_lots_apart_per_model() -> None:
    rows = {r.group: r.failures for r in failure_rate_by_batch(fleet(), failures(), NOW)}
    assert rows == {"A/L1": 2, "A/L2": 0, "B/L1": 1}


def test_failure_rate_by_age_band_splits_exposure() -> None:
    rows = {r.group: r for r in failure_rate_by_age(fleet(), failures(), NOW)}
    # b1 is five years old: it contributes to every band up to 3-5y, failing at age ~5.2.
    assert rows["<1y"].device_years == pytest.approx(2 * 365 / 365.25 + 1.0)
    assert rows["3-5y"].devices == 1 and rows["3-5y"].device_years == pytest.approx(
        2 * 365.25 / 365.25, rel=0.01
    )
    assert rows["1-3y"].failures == 2 and rows["5y+"].failures == 1


def test_problem_database_orders_by_frequency() -> None:
    rows = problem_database(fleet(), failures())
    assert [(p.model, p.fault, p.count) for p in rows] == [
        ("A", "battery", 1),
        ("A", "probe", 1),
        ("B", "probe-health", 1),
    ]
