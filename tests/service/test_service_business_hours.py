"""Business calendar: business time between instants and adding business time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.business_hours import BusinessCalendar

BERLIN = ZoneInfo("Europe/Berlin")
CAL = BusinessCalendar(
    timezone="Europe/Berlin", opens=time(8), closes=time(17), holidays=frozenset({date(2026, 4, 3)})
)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[arg-type,misc]


def test_business_time_within_one_day() -> None:
    assert CAL.business_time(local(2026, 3, 2, 7), local(2026, 3, 2, 10)) == timedelta(hours=2)


def test_business_time_skips_nights_and_weekends() -> None:
    # Friday 16:00 → Monday 09:00: one hour on Friday, one on Monday.
    friday, monday = local(2026, 3, 6, 16), local(2026, 3, 9, 9)
    assert CAL.business_time(friday, monday) == timedelta(hours=2)


def test_holidays_are_closed() -> None:
    good_friday = date(2026, 4, 3)
    assert not CAL.is_business_day(good_friday)
    assert CAL.business_time(local(2026, 4, 3, 0), local(2026, 4, 4, 0)) == timedelta()


def test_add_rolls_over_to_next_business_day() -> None:
    assert CAL.add(local(2026, 3, 6, 16), timedelta(hours=4)) == local(2026, 3, 9, 11)


def test_add_from_outside_hours_starts_at_opening() -> None:
    assert CAL.add(local(2026, 3, 2, 6), timedelta(hours=1)) == local(2026, 3, 2, 9)


def test_add_zero_is_identity() -> None:
    at = local(2026, 3, 7, 3)
    assert CAL.add(at, timedelta()) == at


def test_dst_change_keeps_local_opening_hours() -> None:
    # Berlin springs forward on 2026-03-29; Monday's window is still 08:00-17:00 local.
    window = CAL.window(date(2026, 3, 30))
    assert window == (local(2026, 3, 30, 8).astimezone(UTC), local(2026, 3, 30, 17).astimezone(UTC))
    assert window[0].hour == 6


SHANGHAI_HOSPITAL = BusinessCalendar(
    timezone="Asia/Shanghai", opens=time(8), closes=time(18), holidays=frozenset({date(2026, 5, 1)})
)


def test_a_calendar_keeps_its_own_time_zone() -> None:
    # 08:00–18:00 Asia/Shanghai is 00:00–10:00 UTC, all year (no DST in China).
    assert SHANGHAI_HOSPITAL.window(date(2026, 3, 2)) == (
        datetime(2026, 3, 2, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 10, tzinfo=UTC),
    )
    # Sunday 23:00 UTC is already Monday 07:00 in Shanghai: business starts an hour later.
    sunday_night = datetime(2026, 3, 1, 23, tzinfo=UTC)
    assert SHANGHAI_HOSPITAL.add(sunday_night, timedelta(hours=1)) == datetime(
        2026, 3, 2, 1, tzinfo=UTC
    )


def test_a_local_holiday_is_the_local_date() -> None:
    # Labour Day, Friday 1 May 2026, begins at 16:00 UTC on 30 April.
    thursday_evening = datetime(2026, 4, 30, 9, tzinfo=UTC)  # 17:00 in Shanghai
    monday_morning = datetime(2026, 5, 4, 1, tzinfo=UTC)  # 09:00 in Shanghai
    assert not SHANGHAI_HOSPITAL.is_business_day(date(2026, 5, 1))
    assert SHANGHAI_HOSPITAL.business_time(thursday_evening, monday_morning) == timedelta(hours=2)


def test_results_are_utc() -> None:
    assert CAL.add(local(2026, 3, 2, 9), timedelta(hours=1)).tzinfo is UTC


@pytest.mark.parametrize(
    "fields",
    [
        {"timezone": "Mars/Olympus"},
        {"opens": time(17), "closes": time(8)},
        {"weekdays": frozenset({7})},
        {"weekdays": frozenset()},
    ],
)
def test_bad_calendars_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BusinessCalendar.model_validate(fields)


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@given(instants, st.integers(min_value=1, max_value=200 * 60))
def test_add_inverts_business_time(start: datetime, minutes: int) -> None:
    end = CAL.add(start, timedelta(minutes=minutes))
    assert CAL.business_time(start, end) == timedelta(minutes=minutes)
    # And it is the earliest such instant: a minute earlier is not enough.
    assert CAL.business_time(start, end - timedelta(minutes=1)) < timedelta(minutes=minutes)


@given(instants, instants, instants)
def test_business_time_is_additive(a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    assert CAL.business_time(a, c) == CAL.business_time(a, b) + CAL.business_time(b, c)
