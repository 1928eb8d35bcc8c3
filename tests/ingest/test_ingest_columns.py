"""Batches decoded into columns: both wire versions, validated as columns, exactly as the
reading-by-reading contract says (same readings kept, same rejects with the same reasons)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Batch, ContractError, Reading, decode_batch, encode_batch, reading_problem
from contract.batch_binary import MAGIC_V2
from contract.batch_columns import ColumnarBatch, ReadingColumns, as_columnar
from contract.catalog import METRICS
from contract.validation import TimeWindow
from tests.contract.strategies import (
    NOW_US,
    WINDOW,
    hostile_ids,
    in_window_ts,
    out_of_window_ts,
    valid_ids,
    valid_readings,
)

# Fields of one reading, valid or not (but typed as the wire carries them).
_metrics = st.sampled_from([*METRICS, "wound_colour"])
_units = st.sampled_from(sorted({spec.unit for spec in METRICS.values()} | {"x"}))
_values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-300, 70_000).map(float)


def _encodable(value: object) -> bool:
    """Text UTF-8 can carry (a lone surrogate is a whole-payload error of the JSON parser)."""
    try:
        return (isinstance(value, str) and bool(value.encode())) or value == ""
    except UnicodeEncodeError:
        return False


_ids = valid_ids | hostile_ids().filter(_encodable)
_ts = in_window_ts | out_of_window_ts
_seqs = st.integers(0, 2**63 - 1) | st.integers(-(2**63), -1)
rows = st.tuples(_ids, _metrics, _values, _units, _ts, _seqs)


def _reference(
    fields: list[tuple[str, str, float, str, int, int]], window: TimeWindow | None
) -> tuple[list[Reading], list[tuple[int, str]]]:
    """What the reading-by-reading contract keeps and rejects (index, reason)."""
    kept, rejected = [], []
    for i, f in enumerate(fields):
        problem = reading_problem(*f, window=window)
        if problem is None:
            kept.append(Reading(*f))
        else:
            rejected.append((i, problem))
    return kept, rejected


def _v1(fields: list[tuple[str, str, float, str, int, int]]) -> bytes:
    """A v1 (JSON) payload of these fields, NaN and infinities as JSON's extension tokens."""
    columns = list(zip(*fields, strict=True)) if fields else [()] * 6
    names = ("device_id", "metric", "value", "unit", "ts_us", "seq")
    doc = {"v": 1, "gateway_id": "gw-1", "batch_seq": 3}
    doc |= {name: list(col) for name, col in zip(names, columns, strict=True)}
    return json.dumps(doc).encode()


@settings(max_examples=300)
@given(st.lists(rows, max_size=30), st.booleans())
def test_columns_keep_and_reject_exactly_what_the_contract_does(
    fields: list[tuple[str, str, float, str, int, int]], windowed: bool
) -> None:
    window = WINDOW if windowed else None
    kept, rejected = _reference(fields, window)
    payloads = [_v1(fields), encode_batch(Batch("gw-1", 3, tuple(Reading(*f) for f in fields)))]
    for payload in payloads:
        decoded = decode_batch(payload, window=window)
        assert isinstance(decoded.batch, ColumnarBatch)
        assert decoded.batch.readings == tuple(kept)
        assert [(r.index, r.reason) for r in decoded.rejected] == rejected


@given(st.lists(valid_readings(), max_size=60), st.integers(0, 2**62))
def test_both_versions_round_trip_and_agree(readings: list[Reading], seq: int) -> None:
    batch = Batch("gw-1", seq, tuple(readings))
    v1, v2 = decode_batch(encode_batch(batch, 1)), decode_batch(encode_batch(batch, 2))
    assert v1.batch == batch == v2.batch
    assert v1.rejected == () == v2.rejected
    assert len(v2.batch) == len(readings)


def test_v2_is_the_current_version_and_smaller() -> None:
    readings = tuple(
        Reading(f"patch-{i % 50:04d}", "wound_temp", 33.25, "degC", NOW_US + i, i)
        for i in range(1_000)
    )
    batch = Batch("gw-1", 1, readings)
    assert encode_batch(batch).startswith(MAGIC_V2)
    assert len(encode_batch(batch, 2)) < len(encode_batch(batch, 1)) * 0.6


def test_a_seq_beyond_64_bits_falls_back_to_json_and_is_rejected() -> None:
    batch = Batch("gw-1", 1, (Reading("p1", "battery", 50.0, "%", NOW_US, 2**64),))
    payload = encode_batch(batch)
    assert payload.startswith(b"{")
    decoded = decode_batch(payload)
    assert decoded.batch.readings == ()
    assert "64-bit" in decoded.rejected[0].reason


@given(st.binary(max_size=400))
def test_random_v2_bodies_give_contract_error_or_a_batch(body: bytes) -> None:
    try:
        decoded = decode_batch(MAGIC_V2 + body)
    except ContractError:
        return
    assert isinstance(decoded.batch, ColumnarBatch)


def _payload(head: dict[str, object], body: bytes) -> bytes:
    header = json.dumps(head).encode()
    raw = MAGIC_V2 + struct.pack("<I", len(header)) + header
    return raw + b"\x00" * (-len(raw) % 8) + body


_HEAD = {
    "gateway_id": "gw",
    "batch_seq": 1,
    "count": 1,
    "devices": ["p1"],
    "series": [["battery", "%"]],
}


def _body(device: int = 0, series: int = 0) -> bytes:
    return struct.pack("<dqqII", 50.0, NOW_US, 1, device, series)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (_payload(_HEAD, _body())[:-1], "does not hold 1 readings"),
        (_payload(_HEAD, _body(device=1)), "device index 1"),
        (_payload(_HEAD, _body(series=5)), "series index 5"),
        (_payload({**_HEAD, "gateway_id": "g/w"}, _body()), "gateway_id"),
        (_payload({**_HEAD, "batch_seq": -1}, _body()), "batch_seq"),
        (_payload({**_HEAD, "extra": 1}, _body()), "extra"),
        (_payload({**_HEAD, "count": 50_001}, b""), "count"),
        (MAGIC_V2 + b"\x01", "shorter"),
        (MAGIC_V2 + struct.pack("<I", 1000) + b"{}", "past the end"),
    ],
)
def test_broken_v2_envelopes_name_the_problem(payload: bytes, fragment: str) -> None:
    with pytest.raises(ContractError, match=fragment):
        decode_batch(payload)


def test_unused_and_hostile_table_entries_are_dropped() -> None:
    head = {**_HEAD, "devices": ["p1", "bad/id", "unused"], "series": [["battery", "%"]]}
    body = struct.pack("<dd", 50.0, 60.0) + struct.pack("<qq", NOW_US, NOW_US)
    body += struct.pack("<qq", 1, 2) + struct.pack("<II", 0, 1) + struct.pack("<II", 0, 0)
    decoded = decode_batch(_payload({**head, "count": 2}, body))
    assert isinstance(decoded.batch, ColumnarBatch)
    assert decoded.batch.columns.device_ids == ("p1",)
    assert decoded.rejected[0].index == 1 and "'/'" in decoded.rejected[0].reason


def test_columnar_batch_is_a_batch() -> None:
    readings = (Reading("p1", "battery", 50.0, "%", NOW_US, 1),)
    batch = ColumnarBatch("gw", 2, ReadingColumns.of(readings))
    assert batch == Batch("gw", 2, readings) and Batch("gw", 2, readings) == batch
    assert hash(batch) == hash(Batch("gw", 2, readings))
    assert len(batch) == 1 and batch.readings == readings
    assert as_columnar(batch) is batch
    assert as_columnar(Batch("gw", 2, (readings[0]._replace(unit="V"),))) is None
    columns = batch.columns.take(np.array([True]))
    assert columns.reading(0) == readings[0]
