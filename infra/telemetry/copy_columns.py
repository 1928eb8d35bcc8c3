"""PostgreSQL binary COPY data built from reading columns in bulk, not row by row.

A binary COPY row is its field count, then each field as a 4-byte length and its bytes. Rows
whose texts (device id, metric, unit, gateway id) have the same byte lengths have the same
layout, so each such group is one numpy structured array whose fields are filled a column at
a time; the COPY stream is the header, each group's array as bytes, and the trailer. Row
order does not matter to a COPY. Columns follow ``timescale.READING_COLUMNS``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from contract.batch_columns import METRIC_NAMES, METRIC_UNITS, ColumnarBatch
from contract.validation import MAX_TS_US

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp zero
# datetime's range, which the row-by-row path enforced by converting: year 1 to year 9999.
MIN_TS_US = -62_135_596_800_000_000
_FIELDS = 8
Chunk = bytes | memoryview  # pieces of the COPY stream, sent in order
_METRIC_BYTES = [name.encode() for name in METRIC_NAMES]
_UNIT_BYTES = [unit.encode() for unit in METRIC_UNITS]


@functools.lru_cache(maxsize=4096)
def _template(dev_len: int, code: int, gateway: bytes) -> NDArray[np.void]:
    """One row of this layout with every field but ts, device, value, seq and bseq filled in."""
    metric, unit = _METRIC_BYTES[code], _UNIT_BYTES[code]
    row = np.zeros(1, dtype=_row_dtype(dev_len, len(metric), len(unit), len(gateway)))
    row["n"] = _FIELDS
    row["l_ts"] = row["l_value"] = row["l_seq"] = row["l_bseq"] = 8
    row["l_dev"], row["l_metric"], row["l_unit"], row["l_gw"] = (
        dev_len,
        len(metric),
        len(unit),
        len(gateway),
    )
    row["metric"], row["unit"], row["gw"] = metric, unit, gateway
    return row


def _row_dtype(dev: int, metric: int, unit: int, gateway: int) -> np.dtype[np.void]:
    """The packed layout of one row with texts of these byte lengths."""
    return np.dtype(
        [
            ("n", ">i2"),
            ("l_ts", ">i4"),
            ("ts", ">i8"),
            ("l_dev", ">i4"),
            ("dev", f"S{dev}"),
            ("l_metric", ">i4"),
            ("metric", f"S{metric}"),
            ("l_value", ">i4"),
            ("value", ">f8"),
            ("l_unit", ">i4"),
            ("unit", f"S{unit}"),
            ("l_seq", ">i4"),
            ("seq", ">i8"),
            ("l_gw", ">i4"),
            ("gw", f"S{gateway}"),
            ("l_bseq", ">i4"),
            ("bseq", ">i8"),
        ]
    )


def copy_chunks(batches: Sequence[ColumnarBatch]) -> list[Chunk]:
    """The binary COPY stream of every reading of ``batches``, tagged with its batch."""
    chunks: list[Chunk] = [COPY_HEADER]
    by_gateway: dict[str, list[ColumnarBatch]] = {}
    for batch in batches:
        if len(batch):
            by_gateway.setdefault(batch.gateway_id, []).append(batch)
    for gateway, group in by_gateway.items():
        chunks += _gateway_rows(gateway.encode(), group)
    chunks.append(COPY_TRAILER)
    return chunks


def _gateway_rows(gateway: bytes, batches: Sequence[ColumnarBatch]) -> list[Chunk]:
    """COPY rows of one gateway's batches, one bytes chunk per row layout."""
    ids: list[bytes] = []
    device_parts: list[NDArray[np.intp]] = []
    for batch in batches:
        cols = batch.columns
        device_parts.append(cols.device.astype(np.intp) + len(ids))
        ids += map(str.encode, cols.device_ids)
    device = np.concatenate(device_parts)
    metric = np.concatenate([b.columns.metric for b in batches])
    value = np.concatenate([b.columns.value for b in batches])
    ts = np.concatenate([b.columns.ts_us for b in batches])
    seq = np.concatenate([b.columns.seq for b in batches])
    if len(ts) and (int(ts.min()) < MIN_TS_US or int(ts.max()) > MAX_TS_US):
        raise OverflowError("a timestamp is outside years 1-9999")
    bseq = np.repeat(
        np.array([b.batch_seq for b in batches], dtype=np.int64), [len(b) for b in batches]
    )
    id_len = np.fromiter(map(len, ids), dtype=np.intp, count=len(ids))
    id_bytes = np.array(ids, dtype=f"S{int(id_len.max())}")
    # One key per layout: the device id's length and the metric (which fixes the unit).
    key = (id_len[device] * len(METRIC_NAMES) + metric).astype(np.uint16)
    order = np.argsort(key, kind="stable")  # a radix sort on 16-bit keys
    key = key[order]
    cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate(([0], cuts)).tolist()
    ends = [*cuts.tolist(), len(key)]
    device, metric, value, ts, seq, bseq = (
        a[order] for a in (device, metric, value, ts, seq, bseq)
    )
    out: list[Chunk] = []
    for lo, hi in zip(starts, ends, strict=True):
        dev_len = int(id_len[device[lo]])
        rows = np.empty(hi - lo, dtype=_template(dev_len, int(metric[lo]), gateway).dtype)
        rows[...] = _template(dev_len, int(metric[lo]), gateway)[0]
        rows["ts"] = ts[lo:hi] - PG_EPOCH_US
        rows["dev"] = id_bytes[device[lo:hi]]
        rows["value"] = value[lo:hi]
        rows["seq"] = seq[lo:hi]
        rows["bseq"] = bseq[lo:hi]
        out.append(rows.view(np.uint8).data)  # no copy: COPY sends it as it is
    return out
