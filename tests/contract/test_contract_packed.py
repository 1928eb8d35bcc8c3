"""Packed wire-v2 columns (what the gateway's outbox stores): slices and merges keep readings."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import Batch, Reading, decode_batch, encode_batch
from contract.batch_binary import PackedBatch, PackedColumns
from contract.lazy_batch import reading_count
from tests.contract.strategies import NOW_US, WINDOW, oversized_ints, valid_readings


@st.composite
def split_readings(draw: st.DrawFn) -> tuple[list[Reading], list[int]]:
    """Valid readings and ascending cut points that split them into consecutive parts."""
    readings = draw(st.lists(valid_readings(), max_size=40))
    cuts = sorted(draw(st.lists(st.integers(0, len(readings)), max_size=5)))
    return readings, [0, *cuts, len(readings)]


def parts_of(readings: list[Reading], cuts: list[int]) -> list[PackedColumns]:
    """Each part packed on its own (own tables), alternately read back from a payload slice."""
    parts = []
    for n, (start, stop) in enumerate(itertools.pairwise(cuts)):
        if n % 2:
            payload = PackedColumns.of(readings).payload("gw-1", 0)
            parts.append(PackedColumns.parse(payload, start, stop))
        else:
            parts.append(PackedColumns.of(readings[start:stop]))
    return parts


@given(split_readings())
def test_merged_parts_hold_the_readings_in_order(case: tuple[list[Reading], list[int]]) -> None:
    readings, cuts = case
    merged = PackedColumns.concat(parts_of(readings, cuts))
    assert len(merged) == len(readings)
    assert merged.readings() == tuple(readings)
    assert PackedColumns.parse(merged.payload("gw-1", 3)).readings() == tuple(readings)
    assert merged.devices == tuple(sorted({r.device_id for r in readings}))


@given(st.lists(valid_readings(), max_size=40), st.randoms(use_true_random=False))
def test_the_device_table_does_not_depend_on_the_order_devices_were_heard(
    readings: list[Reading], rnd: random.Random
) -> None:
    """A gateway that hears the same devices in another order sends the same table, so the
    receivers' table caches recognise it (rules.columns.DeviceTable)."""
    heard = readings.copy()
    rnd.shuffle(heard)
    assert PackedColumns.of(heard).devices == PackedColumns.of(readings).devices
    assert PackedColumns.of(heard).readings() == tuple(heard)


@given(split_readings(), st.integers(0, 2**62))
def test_a_packed_batch_decodes_as_its_readings_would(
    case: tuple[list[Reading], list[int]], seq: int
) -> None:
    readings, cuts = case
    packed = PackedBatch("gw-1", seq, PackedColumns.concat(parts_of(readings, cuts)))
    plain = Batch("gw-1", seq, tuple(readings))
    assert packed == plain and plain == packed
    decoded = decode_batch(encode_batch(packed), window=WINDOW)
    assert decoded.rejected == ()
    assert decoded.batch == plain


def test_parts_with_other_tables_are_remapped() -> None:
    def reading(device: str, metric: str, unit: str, seq: int) -> Reading:
        return Reading(device, metric, 1.0 + seq, unit, NOW_US, seq)

    one = [reading("a", "battery", "%", 0), reading("b", "wound_temp", "degC", 1)]
    two = [reading("c", "wound_temp", "degC", 2), reading("a", "battery", "%", 3)]
    merged = PackedColumns.concat([PackedColumns.of(two), PackedColumns.of(one)])
    assert merged.devices == ("a", "b", "c")
    assert merged.series == (("wound_temp", "degC"), ("battery", "%"))  # as first heard
    assert merged.readings() == (*two, *one)


def test_slices_and_timestamps_address_rows() -> None:
    readings = [Reading("a", "battery", 50.0, "%", NOW_US + i, i) for i in range(10)]
    payload = PackedColumns.of(readings).payload("gw-1", 0)
    assert PackedColumns.parse(payload, 3, 6).readings() == tuple(readings[3:6])
    assert PackedColumns.parse(payload, 8).readings() == tuple(readings[8:])
    assert PackedColumns.parse(payload, 4, 100).slice(1, 2).ts_at(0) == NOW_US + 5
    assert len(PackedColumns.concat([])) == 0


def test_counting_a_packed_batch_builds_no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = [Reading("a", "battery", 50.0, "%", NOW_US, i) for i in range(5)]
    batch = PackedBatch("gw-1", 1, PackedColumns.of(readings))

    def refuse(self: PackedColumns) -> tuple[Reading, ...]:
        raise AssertionError("readings were built")

    monkeypatch.setattr(PackedColumns, "readings", refuse)
    assert reading_count(batch) == 5
    assert reading_count(Batch("gw-1", 2, tuple(readings))) == 5
    encode_batch(batch)


@pytest.mark.parametrize("field", ["ts_us", "seq"])
@given(big=oversized_ints)
def test_what_64_bits_cannot_hold_is_refused_whole(field: str, big: int) -> None:
    good = Reading("a", "battery", 50.0, "%", NOW_US, 1)
    with pytest.raises(OverflowError):
        PackedColumns.of([good, good._replace(**{field: big})])


@pytest.mark.parametrize("value", ["50", None, b"5", [1.0]])
def test_a_value_that_is_no_number_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        PackedColumns.of([Reading("a", "battery", value, "%", NOW_US, 1)])  # type: ignore[arg-type]


def test_a_payload_that_is_not_v2_is_refused() -> None:
    with pytest.raises(ValueError, match="v2"):
        PackedColumns.parse(b"{}")
