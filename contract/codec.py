"""Wire codec for batches: versioned and columnar, so that big batches decode fast.

Version 2 (what ``encode_batch`` writes) is a binary columnar envelope (``contract.batch_binary``):
device ids and (metric, unit) pairs once per batch, then one packed array per column. Version 1,
still decoded (gateways not yet upgraded send it), is columnar JSON::

    {"v": 1, "gateway_id": "gw-1", "batch_seq": 7,
     "device_id": [...], "metric": [...], "value": [...], "unit": [...],
     "ts_us": [...], "seq": [...]}

Both decode straight into columns (``contract.batch_decode``): the batch is a ``ColumnarBatch``.
Whole-payload problems (too big, not JSON, wrong schema, unknown version, a bad gateway id or
batch_seq) raise ContractError. Individual readings that break the contract (catalog, device id,
64-bit seq, timestamp range or window) are returned as rejects so the rest still lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from contract.batch_binary import MAGIC_V2, encode_batch_v2
from contract.errors import ContractError, invalid
from contract.reading import Batch, RejectedReading
from contract.validation import TimeWindow, id_problem, int64_problem

WIRE_VERSION = 2
WIRE_VERSIONS = (1, 2)  # what decode_batch reads
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_READINGS_PER_BATCH = 50_000

_COLUMNS = ("device_id", "metric", "value", "unit", "ts_us", "seq")


def gateway_id_field(value: str) -> str:
    """Pydantic validator: a usable gateway id."""
    if problem := id_problem("gateway_id", value):
        raise ValueError(problem)
    return value


def batch_seq_field(value: int) -> int:
    """Pydantic validator: a batch_seq in 0..2^63-1."""
    if problem := int64_problem("batch_seq", value):
        raise ValueError(problem)
    return value


class _WireBatchV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    gateway_id: Annotated[str, AfterValidator(gateway_id_field)]
    batch_seq: Annotated[int, AfterValidator(batch_seq_field)]
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
    """A decoded payload: the valid readings as a Batch (a ColumnarBatch), and the rejects."""

    batch: Batch
    rejected: tuple[RejectedReading, ...]


def encode_batch(batch: Batch, version: int = WIRE_VERSION) -> bytes:
    """Serialise ``batch`` in wire ``version`` (default: the current one)."""
    if version == 2:
        try:
            return encode_batch_v2(batch)
        except OverflowError:
            pass  # a value beyond 64 bits: only JSON can carry it, for ingest to reject
    readings = batch.readings
    doc = {
        "v": 1,
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
    """Parse and validate a wire payload (v1 or v2); raise ContractError if it is unusable.

    Readings outside ``window`` are rejected; without one, only timestamps that no store can
    represent (not after the epoch, past the year 9999) are.
    """
    # numpy, which the columns need, is a server dependency: gateways only encode.
    from contract.batch_decode import decode_v1_columns, decode_v2

    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if payload[: len(MAGIC_V2)] == MAGIC_V2:
        batch, rejected = decode_v2(payload, window)
        return DecodedBatch(batch, tuple(rejected))
    try:
        wire = _WireBatchV1.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("batch", exc) from None
    batch, rejected = decode_v1_columns(
        wire.gateway_id,
        wire.batch_seq,
        wire.device_id,
        wire.metric,
        wire.value,
        wire.unit,
        wire.ts_us,
        wire.seq,
        window,
    )
    return DecodedBatch(batch, tuple(rejected))
