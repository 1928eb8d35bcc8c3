"""The runtime fed decoded columns (what ingest hands over) decides exactly as on readings."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import AlertEvent, Batch, Reading, decode_batch, encode_batch
from contract.batch_columns import ColumnarBatch
from rules import runs
from rules.columns import Columns, DeviceTable, columns_from_batches, columns_from_readings
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


def test_new_devices_are_interned_in_the_order_readings_name_them_not_the_tables() -> None:
    """The gateway lists devices sorted; the engine is fastest when series indices follow the
    order readings arrive in, so new ids are interned in that order."""
    heard = ["p9", "p10", "p2", "p1"]
    readings = tuple(r(d, "exudate", 1, 50.0, i) for i, d in enumerate(heard))
    batch = decode_batch(encode_batch(Batch("gw", 1, readings))).batch
    assert isinstance(batch, ColumnarBatch)
    assert batch.columns.device_ids == ("p1", "p10", "p2", "p9")  # the packer's order
    table = DeviceTable(["p2"])  # known before: keeps its index
    cols = columns_from_batches([batch], table)
    assert table.ids == ["p2", "p9", "p10", "p1"]
    assert [table.ids[i] for i in cols.device] == heard
    again = columns_from_batches([batch], table)  # the same table again: from the cache
    assert np.array_equal(again.device, cols.device) and table.table_hits >= 1


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


def _fresh(ids: list[str]) -> tuple[str, ...]:
    """New string objects equal to ``ids``, as a decoder makes them for every batch."""
    return tuple("".join(list(i)) for i in ids)


# Ids from a tiny alphabet that includes the cache key's separator, so tables collide when joined.
_ids = st.text(alphabet=["a", "b", "\x00"], max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_ids, max_size=6, unique=True), max_size=12), st.integers(1, 12))
def test_lookup_table_gives_what_interning_gives(tables: list[list[str]], bound: int) -> None:
    cached, plain = DeviceTable(cached_ids=bound), DeviceTable()
    for table in tables + tables:  # every table again: the second time from the cache if kept
        got = cached.lookup_table(_fresh(table))
        assert got.tolist() == plain.intern_many(table).tolist()
        assert cached.ids == plain.ids
        assert cached._cached_ids <= bound


def test_a_repeated_table_comes_from_the_cache_and_a_new_device_is_interned() -> None:
    devices = DeviceTable(["p0"])
    ward = [f"patch-{i}" for i in range(500)]
    first = devices.lookup_table(_fresh(ward))
    assert (devices.table_hits, devices.table_misses) == (0, 1)
    again = devices.lookup_table(_fresh(ward))
    assert (devices.table_hits, devices.table_misses) == (1, 1)
    assert again.tolist() == first.tolist() == list(range(1, 501))
    grown = devices.lookup_table(_fresh([*ward[:10], "patch-new", *ward[10:]]))
    assert devices.table_misses == 2
    assert grown.tolist() == [*range(1, 11), 501, *range(11, 501)]
    assert devices.ids[501] == "patch-new"


def test_an_id_holding_the_separator_never_matches_a_cached_table() -> None:
    devices = DeviceTable()
    assert devices.lookup_table(("a", "b")).tolist() == [0, 1]
    assert devices.lookup_table(("a\x00b",)).tolist() == [2]  # joins to the same key
    assert devices.lookup_table(("a\x00b", "c")).tolist() == [2, 3]
    assert devices.lookup_table(("a", "b\x00c")).tolist() == [0, 4]


def test_the_cache_is_bounded_by_the_ids_it_holds() -> None:
    devices = DeviceTable(cached_ids=1000)
    for ward in range(10):
        devices.lookup_table(_fresh([f"w{ward}-p{i}" for i in range(300)]))
    assert devices._cached_ids <= 1000
    assert len(devices._tables) == 3  # the three most recent wards
    devices.lookup_table(_fresh([f"w9-p{i}" for i in range(300)]))
    devices.lookup_table(_fresh([f"w0-p{i}" for i in range(300)]))  # evicted: looked up again
    assert (devices.table_hits, devices.table_misses) == (1, 11)


def test_cached_indices_cannot_be_changed_by_a_caller() -> None:
    devices = DeviceTable()
    lut = devices.lookup_table(("p1", "p2"))
    with pytest.raises(ValueError):
        lut[0] = 7
    assert devices.lookup_table(("p1", "p2")).tolist() == [0, 1]


def test_small_calls_evaluate_on_the_loop_and_large_ones_in_a_thread() -> None:
    groups = [
        [Batch("gw", m, tuple(r(f"p{i}", "exudate", m, 90.0, m) for i in range(n)))]
        for m, n in enumerate([3, 8, 3, 8])
    ]
    wire = [[decode_batch(encode_batch(b)).batch for b in group] for group in groups]

    async def run() -> tuple[list[bool], list[AlertEvent]]:
        settings = RuntimeSettings(data_clock=True, inline_readings=5)
        runtime = RuleRuntime(RULES, {}, None, None, settings)
        process = runtime.engine.process
        on_loop: list[bool] = []

        def spied(cols: Columns, now_us: int | None = None) -> list[AlertEvent]:
            on_loop.append(threading.get_ident() == loop_thread)
            return process(cols, now_us)

        runtime.engine.process = spied  # type: ignore[method-assign]
        loop_thread = threading.get_ident()
        for group in wire:
            await runtime.on_stored(group)
        assert runtime.counters.readings == 22
        return on_loop, list(runtime.recent)

    on_loop, events = asyncio.run(run())
    assert on_loop == [True, False, True, False]
    assert events == _events(groups)
    assert {(e.device_id, e.transition.value) for e in events} == {
        (f"p{i}", "raised") for i in range(8)
    }


def test_a_table_seen_before_is_found_by_identity_and_still_bounded() -> None:
    devices = DeviceTable(cached_ids=1000)
    ward = _fresh([f"patch-{i}" for i in range(400)])
    first = devices.lookup_table(ward)
    devices._tables.clear()  # the keyed cache forgot it: identity alone must find it
    assert devices.lookup_table(ward) is first
    assert (devices.table_hits, devices.table_misses) == (1, 1)
    assert devices.lookup_table(list(ward)).tolist() == first.tolist()  # a list: by key only
    for n in range(5):  # more tables than the bound holds: the identity cache is emptied
        devices.lookup_table(_fresh([f"w{n}-{i}" for i in range(400)]))
        assert devices._identity_ids <= 1000


def test_the_run_cache_is_bounded_by_the_elements_it_holds() -> None:
    for n in range(40):  # batch-sized read-only arrays of a fleet whose batches change shape
        block = np.arange(n, n + 200_000)
        block.flags.writeable = False
        assert runs.run_slice(block) == slice(n, n + 200_000)
        assert runs.run_slice(block) == slice(n, n + 200_000)  # remembered
        assert runs._held[0] <= runs._KEPT_ELEMENTS
    gaps = np.array([0, 1, 3])
    assert runs.run_slice(gaps) is None and runs.as_index(gaps) is gaps
