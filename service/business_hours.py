"""Business-hours calendar: how much business time lies between instants, and adding it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# A calendar whose holidays swallow ten years is a configuration error, not an SLA.
_MAX_DAYS = 3660


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows (e.g. "Asia/Shanghai")."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None
    return name


# An IANA time zone name, checked when the setting is read rather than at the first SLA use.
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]


class BusinessCalendar(BaseModel):
    """Opening hours on given weekdays (Monday=0) in a timezone, minus holidays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneName = "UTC"
    weekdays: frozenset[int] = Field(default=frozenset({0, 1, 2, 3, 4}), min_length=1)
    opens: time = time(8, 0)
    closes: time = time(17, 0)
    holidays: frozenset[date] = frozenset()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.weekdays <= set(range(7)):
            raise ValueError(f"weekdays must be 0 (Monday) to 6, got {sorted(self.weekdays)}")
        if self.opens >= self.closes:
            raise ValueError(f"opens {self.opens} must be before closes {self.closes}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's timezone."""
        return ZoneInfo(self.timezone)

    def is_business_day(self, day: date) -> bool:
        """True when ``day`` (local) is an open weekday and not a holiday."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The UTC opening window of local ``day``, or None on closed days."""
        if not self.is_business_day(day):
            return None
        zone = self.zone
        return (
            datetime.combine(day, self.opens, tzinfo=zone).astimezone(UTC),
            datetime.combine(day, self.closes, tzinfo=zone).astimezone(UTC),
        )

    def windows_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Opening windows that end after ``start``, in order, clipped to begin at ``start``."""
        # UTC throughout: arithmetic on zoneinfo datetimes is wall-clock and breaks across DST.
        start = start.astimezone(UTC)
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(_MAX_DAYS):
            span = self.window(day)
            day += timedelta(days=1)
            if span is None or span[1] <= start:
                continue
            yield max(span[0], start), span[1]
        raise ValueError(f"business time beyond {_MAX_DAYS} days after {start.isoformat()}")

    def business_time(self, start: datetime, end: datetime) -> timedelta:
        """Business time inside [start, end)."""
        total = timedelta()
        if end <= start:
            return total
        for opens, closes in self.windows_from(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant when ``duration`` of business time has passed after ``start``."""
        if duration <= timedelta():
            return start.astimezone(UTC)
        left = duration
        for opens, closes in self.windows_from(start):
            if closes - opens >= left:
                return opens + left
            left -= closes - opens
        raise AssertionError("unreachable: windows_from raises before running out")
