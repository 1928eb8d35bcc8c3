"""Readings and batches: what every component passes along the data path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from contract.catalog import METRICS
from contract.errors import ContractError, printable
from contract.validation import (
    INT64_MAX,
    MAX_TS_US,
    TimeWindow,
    id_problem,
    int64_problem,
    ts_problem,
)


class Reading(NamedTuple):
    """One measured value of one metric of one device.

    ``seq`` is the device's own monotonically increasing counter; together with the device id,
    metric and timestamp it identifies the reading, which is what makes storage idempotent.
    A NamedTuple rather than a frozen dataclass: it is built millions of times a second on the
    ingest path, and costs a quarter as much to construct.
    """

    device_id: str
    metric: str
    value: float
    unit: str
    ts_us: int  # microseconds since the Unix epoch, UTC
    seq: int

    @property
    def timestamp(self) -> datetime:
        """The reading's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_us / 1e6, tz=UTC)

    @property
    def key(self) -> tuple[str, str, int, int]:
        """The identity under which storage deduplicates."""
        return (self.device_id, self.metric, self.seq, self.ts_us)


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings a gateway forwards together; (gateway_id, batch_seq) is unique and stable."""

    gateway_id: str
    batch_seq: int
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class RejectedReading:
    """A reading that failed the contract, kept with its position and reason."""

    index: int
    reason: str
    fields: dict[str, Any]


def check_reading(reading: Reading, window: TimeWindow | None = None) -> None:
    """Raise ContractError unless ``reading`` fits the metric catalog (and ``window``)."""
    reason = reading_problem(*reading, window=window)
    if reason:
        raise ContractError(reason)


def reading_problem(
    device_id: str,
    metric: str,
    value: float,
    unit: str,
    ts_us: int,
    seq: int,
    *,
    window: TimeWindow | None = None,
) -> str | None:
    """Why these fields do not make a valid reading, or None when they do.

    Without ``window`` the timestamp need only be representable (after the epoch, before the
    year 10000); the gateway passes the window of its clock.
    """
    spec = METRICS.get(metric) if isinstance(metric, str) else None
    if spec is None:
        return f"unknown metric {printable(repr(metric), 80)}"
    if problem := id_problem("device_id", device_id):
        return problem
    if unit != spec.unit:
        return f"{metric}: unit {printable(repr(unit), 40)} is not {spec.unit!r}"
    if type(value) is not float and type(value) is not int:  # bool is an int, but no number
        return f"{metric}: value must be a number, not {type(value).__name__}"
    if type(value) is float and not math.isfinite(value):
        return f"{metric}: value {value!r} is not finite"
    if not spec.low <= value <= spec.high:
        return f"{metric}: value {value} outside the valid range [{spec.low}, {spec.high}]"
    if spec.integral and value != int(value):
        return f"{metric}: value {value} must be a whole number"
    if seq_problem := int64_problem("seq", seq):
        return f"{metric}: {seq_problem}"
    if ts := ts_problem(ts_us, window):
        return f"{metric}: {ts}"
    return None


def split_valid(
    readings: Sequence[Reading], window: TimeWindow | None = None
) -> tuple[list[Reading], list[tuple[Reading, str]]]:
    """The valid readings, and each invalid one with its reason, in order."""
    lo, hi = (1, MAX_TS_US) if window is None else (window.lo_us, window.hi_us)
    good: list[Reading] = []
    bad: list[tuple[Reading, str]] = []
    good_ids: set[str] = set()  # device ids already checked: a group repeats a few of them
    for reading in readings:
        device_id, metric, value, unit, ts_us, seq = reading
        spec = METRICS.get(metric) if type(metric) is str else None
        # Fast path for the common, valid reading (each device id is checked once); anything
        # doubtful (NaN fails the range comparison too; an int value) gets the full check.
        if (
            spec is not None
            and type(device_id) is str
            and (device_id in good_ids or _good_id(device_id, good_ids))
            and unit == spec.unit
            and type(value) is float
            and spec.low <= value <= spec.high
            and (not spec.integral or value.is_integer())
            and type(ts_us) is int
            and lo <= ts_us <= hi
            and type(seq) is int
            and 0 <= seq <= INT64_MAX
        ):
            good.append(reading)
            continue
        problem = reading_problem(*reading, window=window)
        if problem is None:
            good.append(reading)
        else:
            bad.append((reading, problem))
    return good, bad


def _good_id(device_id: str, good_ids: set[str]) -> bool:
    """Whether ``device_id`` is a valid id, remembering it in ``good_ids`` if so."""
    if id_problem("device_id", device_id) is not None:
        return False
    good_ids.add(device_id)
    return True
