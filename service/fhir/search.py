"""Observation search: parse FHIR search parameters, and page through readings by a cursor.

Every parse error is a ``SearchError`` (the facade answers 400 with an OperationOutcome). Pages
are ordered by (time, device, metric, seq); the ``_cursor`` of the next link is the last key
served, so a page never repeats or skips a reading, however many share one instant.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from contract import METRICS, Reading
from infra.time_us import us_from_datetime
from service.fhir import codes

DEFAULT_COUNT = 50
MAX_COUNT = 1000
MAX_CODES = 24
MAX_DATES = 4
_PREFIXES = ("eq", "ge", "gt", "le", "lt")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}))?)?)?$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_END = datetime(3000, 1, 1, tzinfo=UTC)

Key = tuple[int, str, str, int]


class SearchError(ValueError):
    """A search parameter that cannot be used; the message says which and why."""


class ReadingSource(Protocol):
    """Where readings come from: the API's ``Telemetry``, or a wrapped ReadingStore."""

    def readings(
        self, device_id: str, metric: str | None, since_us: int, until_us: int, limit: int
    ) -> list[Reading]:
        """Readings of one device in [since_us, until_us), ordered by time then seq."""
        ...


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [since_us, until_us)."""

    since_us: int
    until_us: int


def subject_reference(text: str) -> tuple[str, str]:
    """(resource type, FHIR id) of a ``subject`` value: ``Patient/x``, ``Device/x`` or a URL."""
    parts = text.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] not in ("Patient", "Device") or not _ID.match(parts[-1]):
        raise SearchError("subject must be Patient/<id> or Device/<id>")
    return parts[-2], parts[-1]


def metrics_of(code_params: Sequence[str]) -> set[str] | None:
    """The metrics ``code`` tokens (comma-separated, OR-ed) name; None without any."""
    tokens = [t for p in code_params for t in p.split(",")]
    if not tokens:
        return None
    if len(tokens) > MAX_CODES:
        raise SearchError(f"at most {MAX_CODES} codes")
    found: set[str] = set()
    for token in tokens:
        system, bar, code = token.rpartition("|")
        if not code:
            raise SearchError(f"code {token[:80]!r}: a token is [system|]code")
        found |= codes.metrics_for_code(system if bar else None, code)
    return found


def _date_bounds(text: str) -> tuple[datetime, datetime]:
    """[start, end) of a FHIR date/dateTime at the precision it was written in."""
    if not _DATE.match(text):
        raise SearchError(f"date {text[:40]!r} is not a FHIR date or dateTime")
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if len(text) == 7:
            start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
            later = start + timedelta(days=32)
            return start, later.replace(day=1)
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        at = datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise SearchError(f"date {text[:40]!r}: {exc}") from None
    # A dateTime stands for the second it names, or the microsecond if it has a fraction.
    return at, at + (timedelta(microseconds=1) if "." in text else timedelta(seconds=1))


def window_of(date_params: Sequence[str], now_us: int) -> Window:
    """The window the ``date`` parameters (each ``[prefix]value``, all AND-ed) leave open."""
    if len(date_params) > MAX_DATES:
        raise SearchError(f"at most {MAX_DATES} date parameters")
    lo, hi = _EPOCH, _END
    for param in date_params:
        prefix, value = (param[:2], param[2:]) if param[:2].isalpha() else ("eq", param)
        if prefix not in _PREFIXES:
            raise SearchError(f"date prefix {prefix!r} is not supported; use {_PREFIXES}")
        start, end = _date_bounds(value)
        start, end = max(start, _EPOCH), min(end, _END)
        if prefix in ("eq", "ge"):
            lo = max(lo, start)
        if prefix == "gt":
            lo = max(lo, end)
        if prefix in ("eq", "le"):
            hi = min(hi, end)
        if prefix == "lt":
            hi = min(hi, start)
    return Window(us_from_datetime(lo), min(us_from_datetime(hi), now_us + 86_400_000_000))


def count_of(text: str | None) -> int:
    """The page size ``_count`` asks for (default 50, at most 1000)."""
    if text is None:
        return DEFAULT_COUNT
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise SearchError(f"_count must be a whole number from 1 to {MAX_COUNT}")
    return int(text)


def cursor_text(key: Key) -> str:
    """The opaque ``_cursor`` of a page that ends at ``key``."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def cursor_of(text: str | None) -> Key | None:
    """The key a ``_cursor`` names; SearchError if it was not made by ``cursor_text``."""
    if text is None:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SearchError("_cursor is not one this server made") from None
    if not (
        isinstance(raw, list)
        and len(raw) == 4
        and all(type(raw[i]) is int for i in (0, 3))
        and isinstance(raw[1], str)
        and _ID.match(raw[1])
        and raw[2] in METRICS
    ):
        raise SearchError("_cursor is not one this server made")
    return (raw[0], raw[1], raw[2], raw[3])


def key_of(reading: Reading) -> Key:
    """The order readings are paged in."""
    return (reading.ts_us, reading.device_id, reading.metric, reading.seq)


def _after(
    source: ReadingSource, device_id: str, metric: str, window: Window, after: Key | None, n: int
) -> list[Reading]:
    """Up to ``n`` readings of one series after ``after`` (inclusive of its instant)."""
    since = window.since_us if after is None else max(window.since_us, after[0])
    limit = n + 8
    while True:
        got = source.readings(device_id, metric, since, window.until_us, limit)
        kept = [r for r in got if after is None or key_of(r) > after]
        if len(got) < limit or len(kept) >= n or limit >= 64 * n:
            return kept[:n]
        limit *= 4  # many readings share the cursor's instant: look further


def page(
    source: ReadingSource,
    series: Iterable[tuple[str, str]],
    window: Window,
    after: Key | None,
    count: int,
) -> tuple[list[Reading], Key | None]:
    """One page of readings of ``series`` (device, metric) and the cursor of the next, if any."""
    merged: list[Reading] = []
    for device_id, metric in series:
        merged += _after(source, device_id, metric, window, after, count + 1)
    merged.sort(key=key_of)
    served = merged[:count]
    more = len(merged) > count
    return served, key_of(served[-1]) if more and served else None
