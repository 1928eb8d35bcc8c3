"""Wire codec for batches: versioned, columnar JSON so that big batches parse fast.

Version 1 layout::

    {"v": 1, "gateway_id": "gw-1", "batch_seq": 7,
     "device_id": [...], "metric": [...], "value": [...], "unit": [...],
     "ts_us": [...], "seq": [...]}

Whole-payload problems (too big, not JSON, wrong schema, unknown version, a bad gateway id or
batch_seq) raise ContractError. Individual readings that break the contract (catalog, device id,
64-bit seq, timestamp range or window) are returned as rejects so the rest still lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from contract.catalog import METRICS
from contract.errors import ContractError, invalid
from contract.reading import Batch, Reading, RejectedReading, reading_problem
from contract.validation import INT64_MAX, MAX_TS_US, TimeWindow, id_problem, int64_problem

WIRE_VERSION = 1
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_READINGS_PER_BATCH = 50_000

_COLUMNS = ("device_id", "metric", "value", "unit", "ts_us", "seq")


def _gateway_id(value: str) -> str:
    if problem := id_problem("gateway_id", value):
        raise ValueError(problem)
    return value


def _batch_seq(value: int) -> int:
    if problem := int64_problem("batch_seq", value):
        raise ValueError(problem)
    return value


class _WireBatchV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    gateway_id: Annotated[str, AfterValidator(_gateway_id)]
    batch_seq: Annotated[int, AfterValidator(_batch_seq)]
    device_id: list[str]
    metric: list[str]
    value: list[float]
    unit: list[str]
    ts_us: list[int]
    seq: list[int]

    @model_validator(mode="after")
    def _columns_align(self) -> Self:
        lengths = {name: len(getattr(self, name)) for name in _COLUMNS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"columns differ in length: {lengths}")
        if lengths["value"] > MAX_READINGS_PER_BATCH:
            raise ValueError(f"{lengths['value']} readings exceed {MAX_READINGS_PER_BATCH}")
        return self


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A decoded payload: the valid readings as a Batch, and what was rejected."""

    batch: Batch
    rejected: tuple[RejectedReading, ...]


def encode_batch(batch: Batch) -> bytes:
    """Serialise ``batch`` in the current wire version."""
    readings = batch.readings
    doc = {
        "v": WIRE_VERSION,
        "gateway_id": batch.gateway_id,
        "batch_seq": batch.batch_seq,
        "device_id": [r.device_id for r in readings],
        "metric": [r.metric for r in readings],
        "value": [float(r.value) for r in readings],
        "unit": [r.unit for r in readings],
        "ts_us": [r.ts_us for r in readings],
        "seq": [r.seq for r in readings],
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def decode_batch(payload: bytes, *, window: TimeWindow | None = None) -> DecodedBatch:
    """Parse and validate a wire payload; raise ContractError if it is unusable as a whole.

    Readings outside ``window`` are rejected; without one, only timestamps that no store can
    represent (not after the epoch, past the year 9999) are.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        wire = _WireBatchV1.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("batch", exc) from None
    readings: list[Reading] = []
    rejected: list[RejectedReading] = []
    clean = _columns_clean(wire, window)
    columns = zip(
        wire.device_id, wire.metric, wire.value, wire.unit, wire.ts_us, wire.seq, strict=True
    )
    for i, fields in enumerate(columns):
        _, metric, value, unit, _, _ = fields
        spec = METRICS.get(metric)
        # Fast path for the common, valid reading of a batch whose ids, timestamps and seqs
        # all passed as columns; anything doubtful (NaN fails the range comparison too) gets
        # the full check and its reason.
        if (
            clean
            and spec is not None
            and unit == spec.unit
            and spec.low <= value <= spec.high
            and (not spec.integral or value.is_integer())
        ):
            readings.append(Reading(*fields))
            continue
        problem = reading_problem(*fields, window=window)
        if problem is None:
            readings.append(Reading(*fields))
        else:
            rejected.append(RejectedReading(i, problem, dict(zip(_COLUMNS, fields, strict=True))))
    return DecodedBatch(Batch(wire.gateway_id, wire.batch_seq, tuple(readings)), tuple(rejected))


def _columns_clean(wire: _WireBatchV1, window: TimeWindow | None) -> bool:
    """Whether every device id, timestamp and seq of the batch is valid, checked per column.

    min/max and a set run in C, so a clean batch skips these checks reading by reading.
    """
    if not wire.seq:
        return True
    lo, hi = (1, MAX_TS_US) if window is None else (window.lo_us, window.hi_us)
    return (
        lo <= min(wire.ts_us)
        and max(wire.ts_us) <= hi
        and min(wire.seq) >= 0
        and max(wire.seq) <= INT64_MAX
        and all(id_problem("device_id", d) is None for d in set(wire.device_id))
    )
