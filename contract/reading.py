"""Readings and batches: what every component passes along the data path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from contract.catalog import METRICS
from contract.errors import ContractError


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


def check_reading(reading: Reading) -> None:
    """Raise ContractError unless ``reading`` fits the metric catalog."""
    reason = reading_problem(
        reading.device_id, reading.metric, reading.value, reading.unit, reading.ts_us, reading.seq
    )
    if reason:
        raise ContractError(reason)


def reading_problem(
    device_id: str, metric: str, value: float, unit: str, ts_us: int, seq: int
) -> str | None:
    """Why these fields do not make a valid reading, or None when they do."""
    spec = METRICS.get(metric)
    if spec is None:
        return f"unknown metric {metric!r}"
    if not device_id:
        return "empty device id"
    if unit != spec.unit:
        return f"{metric}: unit {unit!r} is not {spec.unit!r}"
    if not math.isfinite(value):
        return f"{metric}: value {value!r} is not finite"
    if not spec.low <= value <= spec.high:
        return f"{metric}: value {value} outside the valid range [{spec.low}, {spec.high}]"
    if spec.integral and value != int(value):
        return f"{metric}: value {value} must be a whole number"
    if seq < 0:
        return f"{metric}: negative sequence number {seq}"
    if ts_us <= 0:
        return f"{metric}: timestamp {ts_us} is not after the epoch"
    return None
