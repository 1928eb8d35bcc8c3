"""SLA clocks: deadlines, pauses, business hours and breaches detected when they happen."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contract import Severity
from service.business_hours import BusinessCalendar
from service.escalation import escalation_due_at
from service.lifecycle import Arrive, Dispatch, Pause, Resolve, Resume
from service.model import Device, Tier
from service.sla import (
    Breach,
    Clock,
    SlaConfig,
    TierPolicy,
    breach_instant,
    breaches_between,
    deadline,
    sla_status,
    tier_for,
)
from tests.service.factories import T0, accepted, device, hours, on_site, ticket, walk

DEFAULT = SlaConfig()
BUSINESS = SlaConfig(
    tiers={
        Tier.GENERAL: TierPolicy(
            respond=timedelta(hours=4), resolve=timedelta(hours=48), business_hours=True
        )
    },
    calendar=BusinessCalendar(timezone="UTC", opens=time(8), closes=time(16)),
)


def test_default_targets_match_the_contract() -> None:
    assert DEFAULT.target(Tier.URGENT, Clock.RESPOND) == hours(2)
    assert DEFAULT.target(Tier.URGENT, Clock.RESOLVE) == hours(24)
    assert DEFAULT.target(Tier.GENERAL, Clock.RESPOND) == hours(4)
    assert DEFAULT.target(Tier.GENERAL, Clock.RESOLVE) == hours(48)


def test_config_loads_from_plain_data() -> None:
    config = SlaConfig.model_validate(
        {
            "tiers": {"urgent": {"respond": "PT1H", "resolve": "PT8H"}},
            "urgent_from": 2,
            "calendar": {"timezone": "Europe/Berlin", "holidays": ["2026-12-25"]},
        }
    )
    assert config.target(Tier.URGENT, Clock.RESPOND) == hours(1)
    assert config.target(Tier.GENERAL, Clock.RESOLVE) == hours(48)  # default kept
    assert tier_for(Severity.WARNING, config) is Tier.URGENT


def test_business_hours_without_calendar_is_rejected() -> None:
    with pytest.raises(ValidationError, match="no calendar"):
        SlaConfig(
            tiers={Tier.URGENT: TierPolicy(respond=hours(1), resolve=hours(2), business_hours=True)}
        )


def test_non_positive_targets_are_rejected() -> None:
    with pytest.raises(ValidationError):
        TierPolicy(respond=timedelta(), resolve=hours(1))


@pytest.mark.parametrize(
    ("severity", "tier"),
    [
        (Severity.CRITICAL, Tier.URGENT),
        (Severity.WARNING, Tier.GENERAL),
        (Severity.INFO, Tier.GENERAL),
    ],
)
def test_severity_maps_to_tier(severity: Severity, tier: Tier) -> None:
    assert tier_for(severity, DEFAULT) is tier


def test_fresh_ticket_status() -> None:
    status = sla_status(ticket(), T0 + hours(1.5), DEFAULT)
    assert status.respond.remaining == hours(0.5)
    assert status.respond.deadline == T0 + hours(2)
    assert status.resolve.deadline == T0 + hours(24)
    assert not status.breached


def test_respond_met_stops_the_clock() -> None:
    t = accepted(ticket(), T0 + hours(1))
    status = sla_status(t, T0 + hours(10), DEFAULT)
    assert status.respond.stopped_at == T0 + hours(1)
    assert status.respond.elapsed == hours(1)
    assert not status.respond.breached


def test_respond_late_is_breached_for_good() -> None:
    t = accepted(ticket(), T0 + hours(3))
    assert sla_status(t, T0 + hours(30), DEFAULT).respond.breached
    assert breach_instant(t, Clock.RESPOND, DEFAULT) == T0 + hours(2)


def test_accepting_exactly_at_the_deadline_meets_it() -> None:
    t = accepted(ticket(), T0 + hours(2))
    assert not sla_status(t, T0 + hours(2), DEFAULT).respond.breached
    assert breach_instant(t, Clock.RESPOND, DEFAULT) is None


def test_waiting_for_customer_pauses_resolve_clock() -> None:
    t = walk(on_site(ticket(), T0 + hours(1)), (Pause("no access"), T0 + hours(2)))
    paused = sla_status(t, T0 + hours(20), DEFAULT).resolve
    assert paused.paused and paused.deadline is None
    assert paused.elapsed == hours(2)
    t = walk(t, (Resume(), T0 + hours(12)))
    resumed = sla_status(t, T0 + hours(12), DEFAULT).resolve
    assert resumed.deadline == T0 + hours(34)  # 24 h + the 10 h pause
    assert resumed.remaining == hours(22)


def test_clock_breached_while_paused_stays_breached() -> None:
    t = walk(on_site(ticket(), T0), (Pause(), T0 + hours(25)))
    status = sla_status(t, T0 + hours(40), DEFAULT).resolve
    assert status.breached and status.deadline == T0 + hours(24)


def test_business_hours_general_tier() -> None:
    # Opened Friday 15:00 UTC: one business hour Friday, three on Monday → 11:00.
    friday = datetime(2026, 3, 6, 15, tzinfo=UTC)
    t = ticket(tier=Tier.GENERAL, at=friday)
    assert deadline(t, Clock.RESPOND, BUSINESS) == datetime(2026, 3, 9, 11, tzinfo=UTC)
    status = sla_status(t, datetime(2026, 3, 8, 12, tzinfo=UTC), BUSINESS)
    assert status.respond.elapsed == hours(1) and status.respond.remaining == hours(3)


def test_urgent_tier_ignores_business_hours() -> None:
    friday = datetime(2026, 3, 6, 15, tzinfo=UTC)
    assert deadline(ticket(at=friday), Clock.RESPOND, BUSINESS) == friday + hours(2)


def test_breach_detected_in_the_window_containing_it() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0))
    assert breaches_between([t], T0, T0 + hours(2) - timedelta(seconds=1), DEFAULT) == []
    # A window ending exactly at the deadline reports nothing: accepting then still meets it.
    assert breaches_between([t], T0 + hours(1), T0 + hours(2), DEFAULT) == []
    assert breaches_between([t], T0 + hours(2), T0 + hours(3), DEFAULT) == [
        Breach("t1", Clock.RESPOND, Tier.URGENT, T0 + hours(2))
    ]
    assert breaches_between([t], T0 + hours(3), T0 + hours(4), DEFAULT) == []


def test_breaches_are_time_ordered_across_tickets() -> None:
    a = ticket("a", at=T0 + hours(1))
    b = ticket("b", tier=Tier.GENERAL, at=T0)
    found = breaches_between([b, a], T0, T0 + hours(100), DEFAULT)
    assert [(x.ticket_id, x.clock, x.at) for x in found] == [
        ("a", Clock.RESPOND, T0 + hours(3)),
        ("b", Clock.RESPOND, T0 + hours(4)),
        ("a", Clock.RESOLVE, T0 + hours(25)),
        ("b", Clock.RESOLVE, T0 + hours(48)),
    ]


def test_tier_upgrade_dates_the_breach_at_the_upgrade() -> None:
    late = T0 + hours(5)
    t = ticket(tier=Tier.GENERAL).model_copy(update={"tier": Tier.URGENT, "tier_since": late})
    assert breach_instant(t, Clock.RESPOND, DEFAULT) == late


@given(
    st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=3000),
)
def test_polling_in_adjacent_windows_finds_each_breach_once(steps: list[int], poll: int) -> None:
    """However the wall is sliced into windows, each breach shows up exactly once."""
    t = on_site(ticket(), T0 + timedelta(minutes=steps[0]))
    at = t.last_change
    for i, gap in enumerate(steps[1:]):
        at += timedelta(minutes=gap)
        t = walk(t, (Pause() if i % 2 == 0 else Resume(), at))
    if t.state.value == "waiting_for_customer":
        t = walk(t, (Resume(), at))
    end = at + hours(48)
    windows = [T0 + timedelta(minutes=m) for m in range(0, 60 * 80, poll + 7)] + [end]
    seen = [
        b for lo, hi in itertools.pairwise(windows) for b in breaches_between([t], lo, hi, DEFAULT)
    ]
    assert seen == breaches_between([t], T0, end, DEFAULT)
    assert len({b.clock for b in seen}) == len(seen)


def test_resolved_in_time_is_no_breach() -> None:
    t = walk(on_site(ticket(), T0 + hours(1)), (Resolve("probe"), T0 + hours(5)))
    assert breaches_between([t], T0, T0 + hours(100), DEFAULT) == []


def test_accept_then_arrive_does_not_touch_respond_clock() -> None:
    t = walk(accepted(ticket(), T0 + hours(1)), (Arrive(), T0 + hours(6)))
    assert sla_status(t, T0 + hours(6), DEFAULT).respond.elapsed == hours(1)


SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Shanghai hospital: 08:00–18:00 local, closed Monday 9 March 2026 (a site holiday), while
# the default calendar (for sites without their own) keeps 08:00–16:00 UTC.
PER_SITE = BUSINESS.model_copy(
    update={
        "site_calendars": {
            "sh": BusinessCalendar(
                timezone="Asia/Shanghai",
                opens=time(8),
                closes=time(18),
                holidays=frozenset({date(2026, 3, 9)}),
            )
        }
    }
)


class Devices:
    """A DeviceDirectory over a fixed installed base."""

    def __init__(self, *devices: Device) -> None:
        self.by_id = {d.id: d for d in devices}

    def device(self, device_id: str) -> Device | None:
        return self.by_id.get(device_id)


def shanghai(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[arg-type,misc]


def test_sla_counts_in_the_device_sites_calendar_and_time_zone() -> None:
    config = PER_SITE.located(Devices(device("ct-1", site_id="sh"), device("d2", site_id="b")))
    # Friday 16:00 Shanghai (08:00 UTC): two business hours on Friday, Monday is the site's
    # holiday, the other two on Tuesday → 10:00 Shanghai.
    friday = shanghai(2026, 3, 6, 16)
    t = ticket(device_id="ct-1", tier=Tier.GENERAL, at=friday)
    assert deadline(t, Clock.RESPOND, config) == shanghai(2026, 3, 10, 10)
    status = sla_status(t, shanghai(2026, 3, 9, 12), config)  # the holiday counts nothing
    assert status.respond.elapsed == hours(2) and status.respond.remaining == hours(2)
    # The same instant at a site without its own calendar: 08:00–16:00 UTC, Friday → 12:00 UTC.
    elsewhere = ticket(device_id="d2", tier=Tier.GENERAL, at=friday)
    assert deadline(elsewhere, Clock.RESPOND, config) == datetime(2026, 3, 6, 12, tzinfo=UTC)


def test_breaches_and_escalations_keep_the_site_calendar() -> None:
    urgent_business = TierPolicy(respond=hours(2), resolve=hours(24), business_hours=True)
    config = PER_SITE.model_copy(
        update={"tiers": {**PER_SITE.tiers, Tier.URGENT: urgent_business}}
    ).located(Devices(device("ct-1", site_id="sh")))
    t = ticket(device_id="ct-1", at=shanghai(2026, 3, 6, 17))  # one hour before closing
    due = shanghai(2026, 3, 10, 9)  # 17:00–18:00 Friday, the holiday, then 08:00–09:00 Tuesday
    assert escalation_due_at(t, config) == due
    assert breaches_between([t], T0, due + hours(1), config)[0].at == due


def test_without_a_site_lookup_the_default_calendar_applies() -> None:
    t = ticket(device_id="ct-1", tier=Tier.GENERAL, at=datetime(2026, 3, 6, 15, tzinfo=UTC))
    assert deadline(t, Clock.RESPOND, PER_SITE) == datetime(2026, 3, 9, 11, tzinfo=UTC)
    # Bound to the site (a hospital report): 23:00 Friday there, all four hours on Tuesday.
    assert deadline(t, Clock.RESPOND, PER_SITE.for_site("sh")) == shanghai(2026, 3, 10, 12)


def test_unknown_devices_fall_back_to_the_default_calendar() -> None:
    config = PER_SITE.located(Devices())
    t = ticket(device_id="gone", tier=Tier.GENERAL, at=datetime(2026, 3, 6, 15, tzinfo=UTC))
    assert deadline(t, Clock.RESPOND, config) == datetime(2026, 3, 9, 11, tzinfo=UTC)
