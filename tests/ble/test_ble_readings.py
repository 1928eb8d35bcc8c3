"""Decoded frames and adverts become catalog readings."""

from __future__ import annotations

import pytest

from contract import METRICS, ContractError, check_reading
from contract.ble import (
    BTHomeAdvert,
    BTHomeObject,
    BTHomeValue,
    PatchFlags,
    PatchFrame,
    advert_readings,
    frame_readings,
)

TS = 1_700_000_000_000_000


def test_frame_readings_use_catalog_names_units_and_counter() -> None:
    frame = PatchFrame(42, 7.12, 33.5, 32.9, 20.5, 87)
    result = frame_readings(frame, device_id="patch-1", ts_us=TS)
    assert result.rejected == ()
    by_metric = {r.metric: r for r in result.readings}
    assert set(by_metric) == {"wound_ph", "wound_temp", "skin_temp", "exudate", "battery"}
    for reading in result.readings:
        check_reading(reading)
        assert reading.unit == METRICS[reading.metric].unit
        assert (reading.seq, reading.ts_us, reading.device_id) == (42, TS, "patch-1")
    assert by_metric["wound_ph"].value == 7.12


def test_not_available_values_are_skipped() -> None:
    result = frame_readings(PatchFrame(1, None, None, 30.0, None, 50), device_id="p", ts_us=TS)
    assert [r.metric for r in result.readings] == ["skin_temp", "battery"]


def test_off_skin_holds_back_wound_metrics() -> None:
    frame = PatchFrame(1, 7.0, 25.0, 24.0, 10.0, 50, PatchFlags.OFF_SKIN)
    result = frame_readings(frame, device_id="p", ts_us=TS)
    assert [r.metric for r in result.readings] == ["battery"]
    assert len(result.rejected) == 4


def test_out_of_catalog_values_are_rejected_with_reasons() -> None:
    result = frame_readings(PatchFrame(1, 7.0, -3.0, 60.0, None, None), device_id="p", ts_us=TS)
    assert [r.metric for r in result.readings] == ["wound_ph"]
    assert len(result.rejected) == 2 and "outside the valid range" in result.rejected[0]


def test_advert_readings() -> None:
    advert = BTHomeAdvert(
        values=(
            BTHomeValue(BTHomeObject.BATTERY, 80.0),
            BTHomeValue(BTHomeObject.TEMPERATURE, 33.5),
            BTHomeValue(BTHomeObject.TEMPERATURE, 32.9),
            BTHomeValue(BTHomeObject.MOISTURE, 20.5),
        ),
        encrypted=True,
        counter=9,
    )
    result = advert_readings(advert, device_id="p", ts_us=TS)
    values = {r.metric: (r.value, r.seq) for r in result.readings}
    assert values == {
        "wound_temp": (33.5, 9),
        "skin_temp": (32.9, 9),
        "exudate": (20.5, 9),
        "battery": (80.0, 9),
    }


def test_plain_advert_needs_a_seq() -> None:
    advert = BTHomeAdvert((BTHomeValue(BTHomeObject.BATTERY, 80.0),), False, None)
    with pytest.raises(ContractError):
        advert_readings(advert, device_id="p", ts_us=TS)
    assert advert_readings(advert, device_id="p", ts_us=TS, seq=3).readings[0].seq == 3
