"""Parse rule-file durations such as ``90s``, ``30m``, ``6h`` or ``2d`` into microseconds."""

from __future__ import annotations

import re

_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration_us(value: object) -> int:
    """Microseconds in ``value``: a number of seconds or a string with an s/m/h/d suffix."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30m'")
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds < 0:
            raise ValueError(f"duration {value!r} is negative")
        return round(seconds * 1_000_000)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"duration {value!r} is not like '90s', '30m', '6h' or '2d'")
        return round(float(match.group(1)) * _UNITS_US[match.group(2)])
    raise ValueError("a duration must be a number of seconds or a string like '30m'")
