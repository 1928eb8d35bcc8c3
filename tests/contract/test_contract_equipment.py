"""Equipment messages and batches under hostile input: kept or rejected with a reason, no crash."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    ContractError,
    DecodedBatch,
    EquipmentReadings,
    OutOfWindow,
    decode_batch,
    equipment_readings,
)
from contract.equipment import MAX_EQUIPMENT_PAYLOAD_BYTES
from contract.topics import equipment_topic
from tests.contract.strategies import (
    NOW_US,
    WINDOW,
    equipment_docs,
    hostile_ids,
    out_of_window_ts,
    oversized_ints,
    valid_readings,
)

TOPIC = equipment_topic("site-a", "us-1")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def _message(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device_id": "us-1",
        "kind": "ultrasound",
        "seq": 15,
        "ts_us": NOW_US,
        "metrics": {"mains_voltage": 230.6, "error_code": 0.0},
    }
    doc.update(overrides)
    return doc


def _decode(doc: dict[str, Any] | bytes, topic: str = TOPIC) -> EquipmentReadings:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return equipment_readings(payload, topic=topic, window=WINDOW)


def _topic(doc: dict[str, Any]) -> str:
    return equipment_topic("site-a", str(doc["device_id"]))


@given(equipment_docs())
def test_every_valid_message_yields_all_its_readings(doc: dict[str, Any]) -> None:
    decoded = _decode(doc, _topic(doc))
    assert decoded.rejected == ()
    assert {r.metric: r.value for r in decoded.readings} == doc["metrics"]
    assert {(r.device_id, r.ts_us, r.seq) for r in decoded.readings} == {
        (doc["device_id"], doc["ts_us"], doc["seq"])
    }


@given(
    equipment_docs(), st.sampled_from(["device_id", "seq", "ts_us", "kind", "metrics"]), st.data()
)
def test_a_hostile_field_is_refused_with_a_printable_reason(
    doc: dict[str, Any], field: str, data: st.DataObject
) -> None:
    hostile: dict[str, st.SearchStrategy[Any]] = {
        "device_id": hostile_ids().filter(lambda v: isinstance(v, str | int | None | bool)),
        "seq": oversized_ints | st.integers(max_value=-1) | st.sampled_from([15.0, True, "15"]),
        "ts_us": out_of_window_ts | oversized_ints | st.sampled_from([1.7e15, "1", False]),
        "kind": st.text(max_size=10).filter(
            lambda k: k not in ("patch", "ultrasound", "endoscope")
        ),
        "metrics": st.sampled_from([{}, [], None, {"mains_voltage": "230.6"}, {"battery": True}]),
    }
    topic = _topic(doc)
    doc[field] = data.draw(hostile[field])
    payload = json.dumps(doc).encode("utf-8", "surrogatepass")
    with pytest.raises(ContractError) as caught:
        equipment_readings(payload, topic=topic, window=WINDOW)
    assert str(caught.value).isprintable()


@given(equipment_docs(), json_values)
def test_any_json_in_any_field_never_raises_anything_but_contract_error(
    doc: dict[str, Any], value: object
) -> None:
    for field in [*doc, "extra"]:
        mutated = {**doc, field: value}
        try:
            decoded = _decode(mutated, _topic(doc))
        except ContractError as exc:
            assert str(exc).isprintable()
            continue
        assert all(r.reason.isprintable() for r in decoded.rejected)


@given(st.binary(max_size=300))
def test_random_bytes_are_a_contract_error_or_a_message(payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        equipment_readings(payload, window=WINDOW)


def test_an_unknown_metric_rejects_that_reading_only() -> None:
    decoded = _decode(_message(metrics={"mains_voltage": 229.0, "mains_voltag": 1.0}))
    assert [(r.metric, r.value) for r in decoded.readings] == [("mains_voltage", 229.0)]
    (reject,) = decoded.rejected
    assert reject.reason == "unknown metric 'mains_voltag'" and reject.index == 1
    assert reject.fields["device_id"] == "us-1" and reject.fields["kind"] == "ultrasound"


def test_a_metric_of_another_kind_rejects_that_reading_only() -> None:
    decoded = _decode(_message(metrics={"mains_voltage": 229.0, "wound_ph": 7.0}))
    assert [r.metric for r in decoded.readings] == ["mains_voltage"]
    assert decoded.rejected[0].reason == "metric 'wound_ph' is not one a ultrasound reports"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_values_are_rejected(literal: bytes) -> None:
    payload = json.dumps(_message(metrics={"ng_voltage": 0.5, "mains_voltage": "X"})).encode()
    decoded = _decode(payload.replace(b'"X"', literal))
    assert [r.metric for r in decoded.readings] == ["ng_voltage"]
    assert "not finite" in decoded.rejected[0].reason


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (_message(metrics={}), "metrics is empty"),
        (_message(metrics={"mains_voltage": "230.6"}), "valid number"),
        (_message(metrics={"error_code": True}), "valid number"),
        (_message(seq=15.0), "seq: Input should be a valid integer"),
        (_message(seq=2**63), "64-bit"),
        (_message(ts_us=2**63), "64-bit"),
        (_message(ts_us=253_402_300_800_000_000), "year 9999"),
        (_message(ts_us=NOW_US // 1_000_000), "looks like seconds"),
        (_message(ts_us=NOW_US // 1_000), "looks like milliseconds"),
        (_message(ts_us=NOW_US * 1_000), "looks like nanoseconds"),
        (_message(device_id="us\x001"), "U+0000"),
        (_message(device_id="us-1\n"), "U+000A"),
        (_message(device_id="us/1"), "'/'"),
        (_message(extra=1), "extra"),
        (b'{"device_id":"\\ud800","kind":"ultrasound","seq":1,"ts_us":1,"metrics":{}}', "JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "JSON"),
        (b" " * (MAX_EQUIPMENT_PAYLOAD_BYTES + 1), "exceeds"),
        (
            b'{"device_id":"us-1","device_id":"us-2","kind":"ultrasound","seq":1,'
            b'"ts_us":1780000000000000,"metrics":{"ng_voltage":1}}',
            "duplicate keys",
        ),
    ],
)
def test_an_unusable_message_is_refused_with_its_reason(
    payload: dict[str, Any] | bytes, fragment: str
) -> None:
    with pytest.raises(ContractError, match=re.escape(fragment)) as caught:
        _decode(payload)
    assert str(caught.value).isprintable()


def test_the_topic_must_name_the_payloads_device() -> None:
    with pytest.raises(ContractError, match="topic names device 'us-2'"):
        _decode(_message(), equipment_topic("site-a", "us-2"))
    with pytest.raises(ContractError, match="not an equipment topic"):
        _decode(_message(), "site/site-a/equipment/us-1")


def test_a_future_timestamp_is_flagged_as_clock_skew() -> None:
    with pytest.raises(OutOfWindow) as ahead:
        _decode(_message(ts_us=NOW_US + 600_000_000))
    assert ahead.value.ahead and "600 s in the future" in str(ahead.value)
    with pytest.raises(OutOfWindow) as old:
        _decode(_message(ts_us=NOW_US - 500 * 86_400_000_000))
    assert not old.value.ahead


@given(st.lists(valid_readings(), min_size=1, max_size=20), st.data())
def test_a_hostile_reading_in_a_batch_is_rejected_and_the_rest_kept(
    readings: list[Any], data: st.DataObject
) -> None:
    columns: dict[str, list[Any]] = {
        name: [getattr(r, name) for r in readings]
        for name in ("device_id", "metric", "value", "unit", "ts_us", "seq")
    }
    index = data.draw(st.integers(0, len(readings) - 1))
    field = data.draw(st.sampled_from(["device_id", "ts_us", "seq"]))
    bad: dict[str, st.SearchStrategy[Any]] = {
        "device_id": hostile_ids().filter(lambda v: isinstance(v, str)),
        "ts_us": out_of_window_ts | oversized_ints,
        "seq": oversized_ints | st.integers(max_value=-1),
    }
    value = columns[field][index] = data.draw(bad[field])
    payload = json.dumps({"v": 1, "gateway_id": "gw-1", "batch_seq": 3, **columns}).encode()
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        # A lone surrogate is not valid JSON text: the whole payload is refused.
        with pytest.raises(ContractError, match="Invalid JSON"):
            decode_batch(payload, window=WINDOW)
        return
    decoded = decode_batch(payload, window=WINDOW)
    assert isinstance(decoded, DecodedBatch)
    assert [r.index for r in decoded.rejected] == [index]
    assert decoded.rejected[0].reason.isprintable()
    assert len(decoded.batch.readings) == len(readings) - 1


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"gateway_id": "gw\x00"}, "U+0000"),
        ({"gateway_id": "gw/1"}, "'/'"),
        ({"batch_seq": 2**63}, "64-bit"),
        ({"batch_seq": 1.0}, "batch_seq"),
    ],
)
def test_a_batch_with_a_bad_gateway_id_or_batch_seq_is_refused(
    overrides: dict[str, Any], fragment: str
) -> None:
    doc = {
        "v": 1,
        "gateway_id": "gw-1",
        "batch_seq": 1,
        "device_id": [],
        "metric": [],
        "value": [],
        "unit": [],
        "ts_us": [],
        "seq": [],
        **overrides,
    }
    with pytest.raises(ContractError, match=re.escape(fragment)):
        decode_batch(json.dumps(doc).encode())
