"""Exact microsecond time: integers in, integers or aware datetimes out, never a float between.

A float holds microseconds since the epoch exactly only up to 2^53 µs (year 2255) and rounds
on the way through ``timestamp()``; these helpers stay in integer arithmetic throughout.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
_ONE_US = timedelta(microseconds=1)


def now_us() -> int:
    """The wall clock now, in µs since the Unix epoch."""
    return time.time_ns() // 1000


def datetime_from_us(ts_us: int) -> datetime:
    """µs since the Unix epoch → an aware UTC datetime, exactly (OverflowError past year 9999)."""
    return EPOCH + timedelta(microseconds=ts_us)


def us_from_datetime(at: datetime) -> int:
    """An aware datetime → µs since the Unix epoch, exactly."""
    return (at - EPOCH) // _ONE_US


def seconds_to_us(seconds: float) -> int:
    """A duration in seconds (as configured) → whole µs, rounded to nearest."""
    return round(seconds * US_PER_S)
