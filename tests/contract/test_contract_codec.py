"""The wire codec and the metric catalog: pure, no I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    MAX_PAYLOAD_BYTES,
    METRICS,
    Batch,
    ContractError,
    DecodedBatch,
    Reading,
    check_reading,
    decode_batch,
    decode_equipment_message,
    encode_batch,
)
from contract.batch_columns import ColumnarBatch
from contract.batch_decode import device_table
from tests.contract.strategies import valid_readings


@given(st.lists(valid_readings(), max_size=50), st.integers(0, 2**62))
def test_round_trip_keeps_every_valid_reading(readings: list[Reading], seq: int) -> None:
    batch = Batch("gw-1", seq, tuple(readings))
    decoded = decode_batch(encode_batch(batch))
    assert decoded.batch == batch
    assert decoded.rejected == ()


@given(st.binary(max_size=300))
def test_random_bytes_give_contract_error_or_a_batch(payload: bytes) -> None:
    try:
        decoded = decode_batch(payload)
    except ContractError:
        return
    assert isinstance(decoded, DecodedBatch)


def _doc(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "gateway_id": "gw",
        "batch_seq": 1,
        "device_id": ["p1"],
        "metric": ["wound_ph"],
        "value": [7.0],
        "unit": ["pH"],
        "ts_us": [1_700_000_000_000_000],
        "seq": [1],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"v": 2}, "v"),
        ({"value": ["7.0"]}, "value"),  # a string is not a number, even if it parses as one
        ({"seq": [True]}, "seq"),
        ({"metric": ["wound_ph", "battery"]}, "differ in length"),
        ({"extra": 1}, "extra"),
        ({"gateway_id": ""}, "gateway_id"),
    ],
)
def test_wrong_schema_names_the_field(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ContractError, match=fragment):
        decode_batch(_doc(**overrides))


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(ContractError, match="exceeds"):
        decode_batch(b" " * (MAX_PAYLOAD_BYTES + 1))


BAD_READINGS = [
    ("wound_ph", 14.5, "pH", "outside the valid range"),
    ("wound_ph", 7.0, "%", "unit"),
    ("error_code", 1.5, "code", "whole number"),
    ("wound_colour", 1.0, "x", "unknown metric"),
]


@pytest.mark.parametrize(
    ("metric", "value", "unit", "reason"),
    [*BAD_READINGS, ("battery", float("nan"), "%", "not finite")],
)
def test_bad_readings_are_refused_with_a_reason(
    metric: str, value: float, unit: str, reason: str
) -> None:
    with pytest.raises(ContractError, match=reason):
        check_reading(Reading("p1", metric, value, unit, 1_700_000_000_000_000, 2))


@pytest.mark.parametrize(("metric", "value", "unit", "reason"), BAD_READINGS)
def test_a_bad_reading_is_rejected_and_the_rest_of_its_batch_kept(
    metric: str, value: float, unit: str, reason: str
) -> None:
    good = Reading("p1", "battery", 50.0, "%", 1_700_000_000_000_000, 1)
    payload = _doc(
        device_id=["p1", "p1"],
        metric=["battery", metric],
        value=[50.0, value],
        unit=["%", unit],
        ts_us=[good.ts_us] * 2,
        seq=[1, 2],
    )
    decoded = decode_batch(payload)
    assert decoded.batch.readings == (good,)
    assert len(decoded.rejected) == 1
    assert reason in decoded.rejected[0].reason
    assert decoded.rejected[0].index == 1


def test_catalog_covers_the_product_metrics() -> None:
    expected = {
        "wound_ph",
        "wound_temp",
        "skin_temp",
        "exudate",
        "battery",
        "rssi",
        "mains_voltage",
        "ng_voltage",
        "probe_health",
        "error_code",
        "usage_hours",
    }
    assert expected <= set(METRICS)
    assert METRICS["wound_ph"].low == 0.0 and METRICS["wound_ph"].high == 14.0


def test_equipment_message_rejects_garbage_clearly() -> None:
    with pytest.raises(ContractError, match="equipment message"):
        decode_equipment_message(b'{"device_id": "us-1"}')


def test_a_repeated_device_table_decodes_to_the_same_tuple_and_keeps_its_reasons() -> None:
    ts = 1_700_000_000_000_000
    ward = tuple(f"patch-{i}" for i in range(50))
    batch = Batch("gw", 1, tuple(Reading(d, "battery", 50.0, "%", ts, 1) for d in ward))
    first, again = decode_batch(encode_batch(batch, 2)), decode_batch(encode_batch(batch, 2))
    assert isinstance(first.batch, ColumnarBatch) and isinstance(again.batch, ColumnarBatch)
    assert first.batch.columns.device_ids == tuple(sorted(ward))  # the packer's order
    # the very same tuple: the rules runtime finds its device indices by identity
    assert again.batch.columns.device_ids is first.batch.columns.device_ids
    for _ in range(2):  # a table holding a bad id is refused every time, not once
        decoded = decode_batch(
            _doc(
                device_id=["p1", "a/b"],
                value=[7.0, 7.0],
                seq=[1, 2],
                metric=["wound_ph"] * 2,
                unit=["pH"] * 2,
                ts_us=[ts] * 2,
            )
        )
        assert [r.device_id for r in decoded.batch.readings] == ["p1"]
        assert "'a/b' contains '/'" in decoded.rejected[0].reason


def test_a_device_table_too_big_to_keep_is_checked_every_time() -> None:
    ids = [f"patch-{i}" for i in range(5_000)] + ["bad\x00id"]
    first, ok = device_table(ids)
    again, ok_again = device_table(ids)
    assert first == again == tuple(ids) and first is not again  # not kept: checked afresh
    assert ok.tolist() == ok_again.tolist() == [True] * 5_000 + [False]
