"""Parse rule-file durations such as ``90s``, ``30m``, ``6h`` or ``2d`` into microseconds."""

from __future__ import annotations

import re

_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")

MINUTE_US = _UNITS_US["m"]
HOUR_US = _UNITS_US["h"]
DAY_US = _UNITS_US["d"]
# The bucket widths a window picks from when a rule gives no ``resolution``: the finest that
# divides the window into at most ``DEFAULT_BUCKETS`` buckets.
RESOLUTIONS_US = (MINUTE_US, 5 * MINUTE_US, 15 * MINUTE_US, HOUR_US, 6 * HOUR_US, DAY_US)
DEFAULT_BUCKETS = 48
MAX_BUCKETS = 1024  # per rule: the engine keeps this many buckets per series at most


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


def describe_us(us: int) -> str:
    """A duration as the shortest exact ``90s``/``30m``/``6h``/``2d`` text."""
    for unit in ("d", "h", "m", "s"):
        if us % _UNITS_US[unit] == 0:
            return f"{us // _UNITS_US[unit]}{unit}"
    return f"{us / 1e6:g}s"


def pick_resolution(spans_us: tuple[int, ...]) -> int | None:
    """The finest standard bucket width dividing every span into at most 48 buckets, if any."""
    longest = max(spans_us)
    for res in RESOLUTIONS_US:
        if all(span % res == 0 for span in spans_us) and longest // res <= DEFAULT_BUCKETS:
            return res
    return None
