"""The reporting period: half-years, months and instants, all in UTC."""

from __future__ import annotations

import calendar
from datetime import MAXYEAR, UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def half_year(day: date) -> tuple[datetime, datetime]:
    """The half-year containing ``day``: [1 Jan, 1 Jul) or [1 Jul, 1 Jan), in UTC.

    The second half of year 9999 ends at ``datetime.max``, as there is no year 10000.
    """
    if day.month <= 6:
        return datetime(day.year, 1, 1, tzinfo=UTC), datetime(day.year, 7, 1, tzinfo=UTC)
    end = datetime(day.year + 1, 1, 1, tzinfo=UTC) if day.year < MAXYEAR else _LAST
    return datetime(day.year, 7, 1, tzinfo=UTC), end


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole months, clamped to the end of a shorter month (and of time)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    if year > MAXYEAR:
        return date.max
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def utc_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC; ValueError unless both are aware and start < end."""
    # Months and dates are taken in UTC, like every instant of the service domain.
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ValueError("the period needs aware datetimes with start < end")
    return start.astimezone(UTC), end.astimezone(UTC)


def epoch_us(at: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (at - EPOCH) // timedelta(microseconds=1)


def months_of(start: datetime, end: datetime) -> list[date]:
    """First days of the months the period [start, end) touches."""
    last = (end - timedelta(microseconds=1)).date()
    first_index, last_index = start.year * 12 + start.month - 1, last.year * 12 + last.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(first_index, last_index + 1)]


def month_label(month: date) -> str:
    """A month as "Jan 2026"."""
    return f"{_MONTHS[month.month - 1]} {month.year}"
