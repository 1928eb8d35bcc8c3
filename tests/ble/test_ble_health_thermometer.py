"""Health Thermometer Temperature Measurement: round trips, field checks, random bytes."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.ble import (
    BleDecodeError,
    BleEncodeError,
    GattDateTime,
    MedFloat,
    Special,
    TemperatureMeasurement,
    TemperatureType,
    celsius_measurement,
    decode_temperature_measurement,
    encode_temperature_measurement,
)

DATES = st.builds(
    lambda d, unknown: (
        GattDateTime(0, 0, 0, 0, 0, 0)
        if unknown
        else GattDateTime(d.year, d.month, d.day, d.hour, d.minute, d.second)
    ),
    st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)),
    st.booleans(),
)
MEASUREMENTS = st.builds(
    TemperatureMeasurement,
    value=st.one_of(
        st.builds(MedFloat, st.integers(-8388605, 8388605), st.integers(-128, 127)),
        st.sampled_from(Special),
    ),
    fahrenheit=st.booleans(),
    timestamp=st.one_of(st.none(), DATES),
    temperature_type=st.one_of(st.none(), st.sampled_from(TemperatureType)),
)


@given(MEASUREMENTS)
def test_round_trip(measurement: TemperatureMeasurement) -> None:
    data = encode_temperature_measurement(measurement)
    assert decode_temperature_measurement(data) == measurement


def test_known_bytes() -> None:
    m = decode_temperature_measurement(bytes.fromhex("067a0e00fee807021d0d2d0702"))
    assert m.celsius == 37.06
    assert m.timestamp is not None and m.timestamp.to_datetime() == datetime(2024, 2, 29, 13, 45, 7)
    assert m.temperature_type is TemperatureType.BODY


def test_fahrenheit_and_special() -> None:
    m = decode_temperature_measurement(bytes([0x01]) + (0xFE0026F3).to_bytes(4, "little"))
    assert m.fahrenheit and m.celsius == pytest.approx((99.71 - 32) * 5 / 9)
    assert math.isnan(decode_temperature_measurement(bytes.fromhex("00ffff7f00")).celsius)


def test_reserved_flag_bits_are_ignored() -> None:
    assert decode_temperature_measurement(bytes.fromhex("f87a0e00fe")).value == MedFloat(3706, -2)


def test_celsius_measurement() -> None:
    assert celsius_measurement(36.856).value == MedFloat(3686, -2)


@pytest.mark.parametrize(
    "hexed",
    [
        "",
        "007a0e00",  # short FLOAT
        "007a0e00fe00",  # trailing byte
        "027a0e00fe",  # timestamp flagged, absent
        "027a0e00fee807021e0d2d07",  # 30 February
        "027a0e00fee807010118000000",  # hour 24... and one byte too many
        "027a0e00fe0100010100000000"[:26],  # year 1
        "047a0e00fe0a",  # reserved temperature type
        "04ffff7f0109",  # NaN mantissa with an exponent
    ],
)
def test_malformed(hexed: str) -> None:
    with pytest.raises(BleDecodeError):
        decode_temperature_measurement(bytes.fromhex(hexed))


def test_encoder_rejects_bad_fields() -> None:
    with pytest.raises(BleEncodeError):
        encode_temperature_measurement(
            TemperatureMeasurement(MedFloat(1, 0), timestamp=GattDateTime(2024, 13, 1, 0, 0, 0))
        )
    with pytest.raises(BleEncodeError):
        encode_temperature_measurement(TemperatureMeasurement(MedFloat(1 << 23, 0)))


@given(st.binary(max_size=16))
def test_fuzz(data: bytes) -> None:
    try:
        m = decode_temperature_measurement(data)
    except BleDecodeError:
        return
    assert isinstance(m, TemperatureMeasurement)
    if m.timestamp is not None:
        m.timestamp.to_datetime()  # must not raise for a date that decoded
