"""Decode a wire batch (v1 JSON or v2 binary) straight into columns, validated as columns.

Each check of the contract (device id, metric, unit, finite value in range, whole number, seq,
timestamp window) runs once per distinct device or (metric, unit) pair, or as one numpy
comparison per column; only the readings that fail get ``reading_problem``, which words their
reason exactly as the reading-by-reading contract does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from contract.batch_binary import COLUMN_BYTES, header_bounds
from contract.batch_columns import METRIC_CODES, ColumnarBatch, ReadingColumns
from contract.catalog import METRICS
from contract.codec import MAX_READINGS_PER_BATCH, batch_seq_field, gateway_id_field
from contract.errors import ContractError, invalid
from contract.reading import RejectedReading, reading_problem
from contract.validation import INT64_MAX, MAX_TS_US, TimeWindow, id_problem

COLUMNS = ("device_id", "metric", "value", "unit", "ts_us", "seq")


class _HeaderV2(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    gateway_id: Annotated[str, AfterValidator(gateway_id_field)]
    batch_seq: Annotated[int, AfterValidator(batch_seq_field)]
    count: Annotated[int, Field(ge=0, le=MAX_READINGS_PER_BATCH)]
    devices: list[str]
    series: list[tuple[str, str]]


def decode_v2(
    payload: bytes, window: TimeWindow | None
) -> tuple[ColumnarBatch, list[RejectedReading]]:
    """Decode a v2 binary payload (magic already matched)."""
    bounds = header_bounds(payload)
    if bounds is None:
        raise ContractError("batch: v2 payload shorter than its header")
    start, end, body = bounds
    if end > len(payload):
        raise ContractError("batch: v2 header runs past the end of the payload")
    try:
        head = _HeaderV2.model_validate_json(payload[start:end])
    except ValidationError as exc:
        raise invalid("batch", exc) from None
    n = head.count
    if len(payload) != body + n * COLUMN_BYTES:
        raise ContractError(
            f"batch: v2 payload of {len(payload)} bytes does not hold {n} readings"
            f" (expected {body + n * COLUMN_BYTES})"
        )
    at = body
    value = np.frombuffer(payload, "<f8", n, at)
    ts_us = np.frombuffer(payload, "<i8", n, at + 8 * n)
    seq = np.frombuffer(payload, "<i8", n, at + 16 * n)
    device = np.frombuffer(payload, "<u4", n, at + 24 * n)
    series = np.frombuffer(payload, "<u4", n, at + 28 * n)
    if n and int(device.max()) >= len(head.devices):
        raise ContractError(f"batch: device index {int(device.max())} beyond the device table")
    if n and int(series.max()) >= len(head.series):
        raise ContractError(f"batch: series index {int(series.max())} beyond the series table")
    raw = RawColumns(head.devices, device, head.series, series, value, ts_us, seq)
    columns, rejected = validate(raw, window)
    return ColumnarBatch(head.gateway_id, head.batch_seq, columns), rejected


class RawColumns:
    """Columns as decoded, before validation: tables plus per-reading indices into them."""

    def __init__(
        self,
        devices: Sequence[str],
        device: NDArray[np.integer],
        series: Sequence[tuple[str, str]],
        pair: NDArray[np.integer],
        value: NDArray[np.float64],
        ts_us: NDArray[np.int64],
        seq: NDArray[np.int64],
        index: NDArray[np.intp] | None = None,
    ) -> None:
        self.devices = devices
        self.device = device
        self.series = series
        self.pair = pair
        self.value = value
        self.ts_us = ts_us
        self.seq = seq
        self.index = index  # position of each row in the payload (None: the row number)

    def fields(self, row: int) -> tuple[str, str, float, str, int, int]:
        """Row ``row`` as the fields of a Reading."""
        metric, unit = self.series[int(self.pair[row])]
        return (
            self.devices[int(self.device[row])],
            metric,
            float(self.value[row]),
            unit,
            int(self.ts_us[row]),
            int(self.seq[row]),
        )

    def take(self, rows: NDArray[np.bool_]) -> RawColumns:
        """The rows ``rows`` selects, same tables."""
        return RawColumns(
            self.devices,
            self.device[rows],
            self.series,
            self.pair[rows],
            self.value[rows],
            self.ts_us[rows],
            self.seq[rows],
        )

    def position(self, row: int) -> int:
        """Where row ``row`` was in the payload."""
        return row if self.index is None else int(self.index[row])


def validate(
    raw: RawColumns, window: TimeWindow | None
) -> tuple[ReadingColumns, list[RejectedReading]]:
    """The valid rows as ReadingColumns, and each invalid one with its reason."""
    code, low, high, integral = _series_specs(raw.series)
    raw.devices, dev_ok = device_table(raw.devices)
    lo, hi = (1, MAX_TS_US) if window is None else (window.lo_us, window.hi_us)
    pair, value = raw.pair, raw.value
    with np.errstate(invalid="ignore"):  # NaN compares False, which is what rejects it
        ok = (
            (code[pair] >= 0)
            & dev_ok[raw.device]
            & (low[pair] <= value)
            & (value <= high[pair])
            & (~integral[pair] | (np.floor(value) == value))
            & (raw.ts_us >= lo)
            & (raw.ts_us <= hi)
            & (raw.seq >= 0)
        )
    rejected: list[RejectedReading] = []
    if not ok.all():
        for row in np.flatnonzero(~ok).tolist():
            fields = raw.fields(row)
            problem = reading_problem(*fields, window=window)
            if problem is None:  # never expected: the columns are at least as strict
                ok[row] = True
                continue
            where = raw.position(row)
            rejected.append(
                RejectedReading(where, problem, dict(zip(COLUMNS, fields, strict=True)))
            )
    if rejected:
        raw = raw.take(ok)
        pair = raw.pair
    ids, device = _compact(raw.devices, raw.device)
    columns = ReadingColumns(
        ids,
        device,
        code[pair].astype(np.uint8),
        np.ascontiguousarray(raw.value, dtype=np.float64),
        np.ascontiguousarray(raw.ts_us, dtype=np.int64),
        np.ascontiguousarray(raw.seq, dtype=np.int64),
    )
    return columns, rejected


# Device tables seen recently, up to this many ids each: a gateway sends the same table batch
# after batch, so checking each id (~0.5 µs) is paid once per table, not once per batch.
_TABLE_CACHE_ENTRIES = 1024
_TABLE_CACHE_MAX_IDS = 4096


def device_table(devices: Sequence[str]) -> tuple[tuple[str, ...], NDArray[np.bool_]]:
    """A batch's device ids as a tuple, and which of them are usable ids.

    A table seen recently comes back as the very tuple returned then (so consumers can
    recognise it by identity, as ``rules.columns.DeviceTable`` does), with a read-only mask.
    """
    ids = tuple(devices)
    if len(ids) <= _TABLE_CACHE_MAX_IDS:
        known, ok, all_ok = _known_table(ids)
        # All usable means all text, and equal text is the same id. (A table holding other
        # values may equal another one that is not the same: 1 == True.)
        if all_ok:
            return known, ok
    return ids, _usable(ids)


@functools.lru_cache(maxsize=_TABLE_CACHE_ENTRIES)
def _known_table(ids: tuple[str, ...]) -> tuple[tuple[str, ...], NDArray[np.bool_], bool]:
    ok = _usable(ids)
    return ids, ok, bool(ok.all())


def _usable(ids: tuple[str, ...]) -> NDArray[np.bool_]:
    ok = np.array([id_problem("device_id", d) is None for d in ids], dtype=np.bool_)
    ok.flags.writeable = False
    return ok


def _series_specs(
    series: Sequence[tuple[str, str]],
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Per (metric, unit) pair: catalog code (-1: unknown metric or wrong unit), range, whole."""
    n = len(series)
    code = np.full(n, -1, dtype=np.intp)
    low = np.zeros(n)
    high = np.zeros(n)
    integral = np.zeros(n, dtype=np.bool_)
    for i, (metric, unit) in enumerate(series):
        spec = METRICS.get(metric)
        if spec is not None and unit == spec.unit:
            code[i] = METRIC_CODES[metric]
            low[i], high[i], integral[i] = spec.low, spec.high, spec.integral
    return code, low, high, integral


def _compact(
    devices: Sequence[str], device: NDArray[np.integer]
) -> tuple[tuple[str, ...], NDArray[np.int32]]:
    """The device table reduced to the ids ``device`` uses, and ``device`` renumbered."""
    used = np.bincount(device, minlength=len(devices)) > 0 if len(device) else None
    if used is not None and used.all():
        return tuple(devices), device.astype(np.int32)
    keep = np.flatnonzero(used) if used is not None else np.zeros(0, dtype=np.intp)
    lut = np.zeros(len(devices), dtype=np.int32)
    lut[keep] = np.arange(len(keep), dtype=np.int32)
    return tuple(devices[i] for i in keep.tolist()), lut[device]


def decode_v1_columns(
    gateway_id: str,
    batch_seq: int,
    device_id: list[str],
    metric: list[str],
    value: list[float],
    unit: list[str],
    ts_us: list[int],
    seq: list[int],
    window: TimeWindow | None,
) -> tuple[ColumnarBatch, list[RejectedReading]]:
    """Validated columns of a parsed v1 (JSON) batch."""
    rejected: list[RejectedReading] = []
    index: NDArray[np.intp] | None = None
    if not _ints_fit(ts_us, seq):
        # A timestamp or seq beyond 64 bits: those rows are checked one by one first, so the
        # rest fit numpy's int64.
        keep: list[int] = []
        for i, fields in enumerate(zip(device_id, metric, value, unit, ts_us, seq, strict=True)):
            if _fits(fields[4]) and _fits(fields[5]):
                keep.append(i)
                continue
            problem = reading_problem(*fields, window=window) or "ts_us or seq out of range"
            rejected.append(RejectedReading(i, problem, dict(zip(COLUMNS, fields, strict=True))))
        device_id = [device_id[i] for i in keep]
        metric = [metric[i] for i in keep]
        value = [value[i] for i in keep]
        unit = [unit[i] for i in keep]
        ts_us = [ts_us[i] for i in keep]
        seq = [seq[i] for i in keep]
        index = np.array(keep, dtype=np.intp)
    devices: dict[str, int] = {}
    series: dict[tuple[str, str], int] = {}
    device = [devices.setdefault(d, len(devices)) for d in device_id]
    pair = [series.setdefault(p, len(series)) for p in zip(metric, unit, strict=True)]
    raw = RawColumns(
        list(devices),
        np.array(device, dtype=np.intp),
        list(series),
        np.array(pair, dtype=np.intp),
        np.array(value, dtype=np.float64),
        np.array(ts_us, dtype=np.int64),
        np.array(seq, dtype=np.int64),
        index,
    )
    columns, more = validate(raw, window)
    if rejected:
        more = sorted([*rejected, *more], key=lambda r: r.index)
    return ColumnarBatch(gateway_id, batch_seq, columns), more


def _fits(value: int) -> bool:
    return -INT64_MAX - 1 <= value <= INT64_MAX


def _ints_fit(ts_us: list[int], seq: list[int]) -> bool:
    """Whether every timestamp and seq fits a signed 64-bit integer (min/max run in C)."""
    if not seq:
        return True
    return _fits(min(ts_us)) and _fits(max(ts_us)) and _fits(min(seq)) and _fits(max(seq))
