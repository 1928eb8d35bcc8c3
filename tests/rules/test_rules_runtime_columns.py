"""The runtime fed decoded columns (what ingest hands over) decides exactly as on readings."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import AlertEvent, Batch, Reading, decode_batch, encode_batch
from contract.batch_columns import ColumnarBatch
from rules.columns import DeviceTable, columns_from_batches, columns_from_readings
from rules.runtime import RuleRuntime, RuntimeSettings
from tests.rules.harness import r, rules_from

RULES = rules_from("""
rules:
  - {id: wet, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 85, for: 2m}, clear: {below: 20}}
  - {id: hot, kind: threshold, severity: critical, source: s, scope: {metric: wound_temp},
     raise: {above: 38}, clear: {below: 37}}
""")

_reading = st.builds(
    lambda device, metric, minute, value: r(
        device, metric, minute, value if metric == "exudate" else 30 + value / 10
    ),
    st.sampled_from(["p1", "p2", "p3", "patch-long-name-4"]),
    st.sampled_from(["exudate", "wound_temp"]),
    st.integers(0, 30),
    st.integers(0, 100).map(float),
)


def _events(batches: list[list[Batch]]) -> list[AlertEvent]:
    """Every event the runtime delivers for these groups of batches, in order."""

    async def run() -> list[AlertEvent]:
        runtime = RuleRuntime(RULES, {}, None, None, RuntimeSettings(data_clock=True))
        for group in batches:
            await runtime.on_stored(group)
        return list(runtime.recent)

    return asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.lists(_reading, max_size=8), min_size=1, max_size=3), max_size=6))
def test_decoded_columns_give_the_events_readings_give(groups: list[list[list[Reading]]]) -> None:
    plain = [
        [Batch("gw", 10 * g + k, tuple(readings)) for k, readings in enumerate(group)]
        for g, group in enumerate(groups)
    ]
    wire = [[decode_batch(encode_batch(b)).batch for b in group] for group in plain]
    assert all(isinstance(b, ColumnarBatch) for group in wire for b in group)
    assert _events(wire) == _events(plain)


def test_columns_from_batches_intern_devices_as_readings_do() -> None:
    readings = [r(f"p{i % 7}", "exudate", i, 50.0, i) for i in range(40)]
    batches = [
        decode_batch(encode_batch(Batch("gw", n, tuple(readings[n::3])))).batch for n in range(3)
    ]
    by_batches, by_readings = DeviceTable(["p3"]), DeviceTable(["p3"])
    got = columns_from_batches(batches, by_batches)
    want = columns_from_readings([x for b in batches for x in b.readings], by_readings)
    assert by_batches.ids == by_readings.ids
    for name in ("device", "metric", "value", "ts_us"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_a_raise_and_a_clear_come_through_columns() -> None:
    groups = [
        [Batch("gw", m, (r("p1", "exudate", m, 90.0, m), r("p2", "wound_temp", m, 39.0, m)))]
        for m in range(4)
    ]
    groups.append([Batch("gw", 9, (r("p1", "exudate", 5, 5.0, 9),))])
    wire = [[decode_batch(encode_batch(b)).batch for b in group] for group in groups]
    events = _events(wire)
    assert [(e.device_id, e.rule_id, e.transition.value) for e in events] == [
        ("p2", "hot", "raised"),
        ("p1", "wet", "raised"),
        ("p1", "wet", "cleared"),
    ]
    assert events == _events(groups)
