"""The field types every API input is built from: bounded, printable, and in a sane range.

Every free-text field has a ``max_length`` (the audit log copies titles and notes forever),
rejects NUL and every other control character (a note may hold newlines and tabs) and lone
surrogates (they cannot be encoded, so they would fail in the store or the audit hash). Dates
and instants are bounded so that no later arithmetic (a day earlier, a half-year later, µs
since the epoch) can overflow into a 500.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

# Ids in paths and bodies: letters, digits and ._:- only, so nothing odd reaches a database or
# a log line.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAYBE_ID_PATTERN = r"^[A-Za-z0-9._:-]{0,128}$"

EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)
_FIRST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_INSTANT = datetime(3000, 1, 1, tzinfo=UTC)
_RANGE = f"must lie between {EARLIEST} and {LATEST}"


def _refuse_unprintable(value: str, allowed: str) -> str:
    for char in value:
        if char in allowed:
            continue
        category = unicodedata.category(char)
        if category == "Cs":
            raise ValueError(f"lone surrogate U+{ord(char):04X} is not text")
        if category == "Cc":
            raise ValueError(f"control character U+{ord(char):04X} is not accepted here")
    return value


def single_line(value: str) -> str:
    """``value`` unless it holds a control character (newlines too) or a lone surrogate."""
    return _refuse_unprintable(value, "")


def multi_line(value: str) -> str:
    """``value`` unless it holds a control character other than newline/tab, or a surrogate."""
    return _refuse_unprintable(value, "\n\t")


# The schema states the character rule as a pattern (so clients and schemathesis know it);
# the validators enforce it with a message naming the character.
_LINE = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}
_LINES = {"pattern": r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"}

# The length is checked first, so no validator ever scans an oversized string.
SafeText = Annotated[
    str, Field(max_length=200, json_schema_extra=_LINE), AfterValidator(single_line)
]
"""One line of text: titles, names, fault types (≤ 200 characters)."""
ShortText = Annotated[
    str, Field(max_length=128, json_schema_extra=_LINE), AfterValidator(single_line)
]
"""A short label: regions, serials, lots, firmware versions (≤ 128 characters)."""
Name = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra=_LINE),
    AfterValidator(single_line),
]
"""A required line of text: a hospital's or an engineer's name."""
Label = Annotated[
    str,
    Field(min_length=1, max_length=128, json_schema_extra=_LINE),
    AfterValidator(single_line),
]
"""A required short label: region, model, serial."""
Note = Annotated[str, Field(max_length=4000, json_schema_extra=_LINES), AfterValidator(multi_line)]
"""Free text that may span lines: notes, resolutions, reasons (≤ 4000 characters)."""
LongText = Annotated[
    str, Field(max_length=100_000, json_schema_extra=_LINES), AfterValidator(multi_line)
]
"""A whole document to be hashed, e.g. the report a customer signs (≤ 100,000 characters)."""
IdText = Annotated[str, Field(pattern=ID_PATTERN)]
"""An id: 1–128 of letters, digits and ._:-"""
MaybeId = Annotated[str, Field(pattern=MAYBE_ID_PATTERN)]
"""An id or the empty string."""


def in_date_range(value: date) -> date:
    """``value`` unless it lies outside [1970-01-01, 2999-12-31]."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"date {value} {_RANGE}")
    return value


def in_instant_range(value: datetime) -> datetime:
    """``value`` unless it lies outside [1970-01-01, 3000-01-01) UTC."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"instant {_RANGE}") from None
    if not _FIRST_INSTANT <= utc < _LAST_INSTANT:
        raise ValueError(f"instant {value.isoformat()} {_RANGE}")
    return value


ApiDate = Annotated[date, AfterValidator(in_date_range)]
ApiInstant = Annotated[AwareDatetime, AfterValidator(in_instant_range)]
