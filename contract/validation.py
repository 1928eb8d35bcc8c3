"""Checks every input passes at the edge: ids, 64-bit integers and the timestamp window.

Pure functions returning a reason (``None`` when the value is fine), so the codecs can reject a
single reading and keep the rest. "Now" is passed in as a ``TimeWindow``, never read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contract.errors import ContractError, printable

INT64_MAX = 2**63 - 1
# The last µs Python's datetime (and so every store and the rules) can represent.
MAX_TS_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
_HINT_FLOOR_US = 946_684_800_000_000  # 2000-01-01: no telemetry is older, so no unit hint below
MAX_ID_LENGTH = 128
ID_RESERVED = "/+#"  # MQTT's level separator and wildcards: ids become topic levels
US_PER_S = 1_000_000
# Engineering defaults, not clinical requirements: a year of retention plus a month for gateway
# outages, and a few minutes for the clock drift of unsynchronised equipment.
DEFAULT_MAX_AGE_S = 400 * 86_400
DEFAULT_MAX_FUTURE_S = 300
_UNITS = (("seconds", 1_000_000, 1), ("milliseconds", 1_000, 1), ("nanoseconds", 1, 1_000))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OutOfWindow(ContractError):
    """A timestamp outside the accepted window; ``ahead`` when it lies in the future (skew)."""

    def __init__(self, reason: str, *, ahead: bool, device_id: str | None = None) -> None:
        super().__init__(reason)
        self.ahead = ahead
        self.device_id = device_id  # whose clock it is, when known


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The timestamps accepted at ``now_us``: not older than ``max_age_us``, not further ahead
    than ``max_future_us`` (``None``: unbounded on that side, up to the representable range)."""

    now_us: int
    max_age_us: int | None = DEFAULT_MAX_AGE_S * US_PER_S
    max_future_us: int | None = DEFAULT_MAX_FUTURE_S * US_PER_S
    lo_us: int = field(init=False)
    hi_us: int = field(init=False)

    def __post_init__(self) -> None:
        lo = 1 if self.max_age_us is None else max(1, self.now_us - self.max_age_us)
        hi = MAX_TS_US if self.max_future_us is None else self.now_us + self.max_future_us
        object.__setattr__(self, "lo_us", lo)
        object.__setattr__(self, "hi_us", min(hi, MAX_TS_US))

    @classmethod
    def at(cls, now_us: int, max_age_s: float | None, max_future_s: float | None) -> TimeWindow:
        """The window at ``now_us`` from settings in seconds (``None``: no bound)."""
        return cls(
            now_us,
            None if max_age_s is None else round(max_age_s * US_PER_S),
            None if max_future_s is None else round(max_future_s * US_PER_S),
        )

    def ahead(self, ts_us: int) -> bool:
        """Whether ``ts_us`` is a representable time beyond the window's future edge (skew)."""
        return type(ts_us) is int and self.hi_us < ts_us <= MAX_TS_US


def id_problem(what: str, value: object) -> str | None:
    """Why ``value`` is not a usable device or gateway id, or None when it is."""
    if not isinstance(value, str):
        return f"{what} must be text, not {type(value).__name__}"
    if not value:
        return f"{what} is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} of {len(value)} characters is longer than {MAX_ID_LENGTH}"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (
            f"{what} '{printable(value, 40)}' contains the control or non-printable character"
            f" U+{ord(bad):04X}"
        )
    for char in ID_RESERVED:
        if char in value:
            return f"{what} {value!r} contains {char!r}, which MQTT topics reserve"
    return None


def check_id(what: str, value: object) -> str:
    """``value`` if it is a usable id; raise ContractError otherwise."""
    problem = id_problem(what, value)
    if problem is not None:
        raise ContractError(problem)
    assert isinstance(value, str)
    return value


def int64_problem(what: str, value: int, low: int = 0) -> str | None:
    """Why ``value`` is not an integer in ``low``..2^63-1, or None when it is."""
    if type(value) is not int:
        return f"{what} must be an integer, not {type(value).__name__}"
    if value > INT64_MAX:
        return f"{what} {_short(value)} does not fit a signed 64-bit integer"
    if value < low:
        return f"{what} {_short(value)} is below {low}"
    return None


def ts_problem(ts_us: int, window: TimeWindow | None = None) -> str | None:
    """Why ``ts_us`` is not an acceptable reading time, or None when it is.

    Without a window only the representable range is enforced (after the epoch, before the
    year 10000); with one, the window's bounds. A value that would fit as seconds,
    milliseconds or nanoseconds says so.
    """
    lo, hi = (1, MAX_TS_US) if window is None else (window.lo_us, window.hi_us)
    if type(ts_us) is int and lo <= ts_us <= hi:
        return None
    return _ts_reason(ts_us, window)


def check_ts(ts_us: int, window: TimeWindow | None = None, device_id: str | None = None) -> None:
    """Raise OutOfWindow (a ContractError) unless ``ts_us`` is acceptable."""
    problem = ts_problem(ts_us, window)
    if problem is not None:
        ahead = window is not None and window.ahead(ts_us)
        raise OutOfWindow(problem, ahead=ahead, device_id=device_id)


def _ts_reason(ts_us: int, window: TimeWindow | None) -> str:
    """The reason for a timestamp ``ts_problem`` found outside its bounds."""
    if problem := int64_problem("ts_us", ts_us, low=-INT64_MAX - 1):
        return problem
    # Read in another unit, would it be a plausible time (since 2000, not in the future)?
    hint_hi = MAX_TS_US if window is None else window.hi_us
    for unit, scale_up, scale_down in _UNITS:
        if _HINT_FLOOR_US <= ts_us * scale_up // scale_down <= hint_hi:
            return (
                f"ts_us {ts_us} looks like {unit}; ts_us is microseconds since the Unix epoch, UTC"
            )
    if ts_us <= 0:
        return f"ts_us {ts_us} is not after the Unix epoch"
    if ts_us > MAX_TS_US:
        return f"ts_us {_short(ts_us)} is after the year 9999 (the latest representable time)"
    assert window is not None
    when = _iso(ts_us)
    if ts_us < window.lo_us:
        days = (window.now_us - ts_us) / (86_400 * US_PER_S)
        horizon = (window.now_us - window.lo_us) / (86_400 * US_PER_S)
        return (
            f"ts_us {ts_us} ({when}) is {days:.1f} days old, older than the retention"
            f" horizon of {horizon:g} days"
        )
    ahead_s = (ts_us - window.now_us) / US_PER_S
    allowed_s = (window.hi_us - window.now_us) / US_PER_S
    return (
        f"ts_us {ts_us} ({when}) is {ahead_s:.0f} s in the future; at most {allowed_s:g} s"
        " of clock skew is accepted"
    )


def _iso(ts_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=ts_us)).isoformat().replace("+00:00", "Z")


def _short(value: int) -> str:
    """An integer as text, shortened when hostile input made it enormous."""
    text = str(value) if value.bit_length() < 200 else f"of {value.bit_length()} bits"
    return text
