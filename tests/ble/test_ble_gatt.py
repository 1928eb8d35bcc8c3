"""Battery Level and Device Information codecs."""

from __future__ import annotations

from contextlib import suppress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.ble import (
    BleDecodeError,
    BleEncodeError,
    DeviceInformation,
    decode_battery_level,
    decode_device_information,
    decode_utf8s,
    encode_battery_level,
    encode_device_information,
    encode_utf8s,
    uuids,
)

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=60)


@given(st.integers(0, 100))
def test_battery_round_trip(percent: int) -> None:
    assert decode_battery_level(encode_battery_level(percent)) == percent


@pytest.mark.parametrize("data", [b"", b"\x65", b"\x10\x00"])
def test_battery_malformed(data: bytes) -> None:
    with pytest.raises(BleDecodeError):
        decode_battery_level(data)


def test_battery_encode_range() -> None:
    with pytest.raises(BleEncodeError):
        encode_battery_level(101)


@given(TEXT)
def test_utf8s_round_trip(text: str) -> None:
    assert decode_utf8s(encode_utf8s(text)) == text


def test_utf8s_details() -> None:
    assert decode_utf8s(b"VG-PATCH-2\x00\x00") == "VG-PATCH-2"
    for bad in (b"\xff", b"a\x00b", b"x" * 513):
        with pytest.raises(BleDecodeError):
            decode_utf8s(bad)
    for text in ("a\x00", "\ud800"):
        with pytest.raises(BleEncodeError):
            encode_utf8s(text)


@given(TEXT.filter(str.strip), TEXT.filter(str.strip), TEXT.filter(str.strip))
def test_device_information_round_trip(model: str, serial: str, firmware: str) -> None:
    info = DeviceInformation(model, serial, firmware)
    assert decode_device_information(encode_device_information(info)) == info


def test_device_information_keys_are_case_insensitive_and_complete() -> None:
    values = {
        uuids.MODEL_NUMBER.upper(): b"VG-2",
        uuids.SERIAL_NUMBER: b"SN1",
        uuids.FIRMWARE_REVISION: b"1.4.0",
    }
    assert decode_device_information(values) == DeviceInformation("VG-2", "SN1", "1.4.0")
    with pytest.raises(BleDecodeError):
        decode_device_information({uuids.MODEL_NUMBER: b"VG-2"})
    with pytest.raises(BleDecodeError):
        decode_device_information({**values, uuids.SERIAL_NUMBER: b"  "})


@given(st.binary(max_size=20), st.binary(max_size=4))
def test_fuzz(data: bytes, short: bytes) -> None:
    for decode, arg in ((decode_utf8s, data), (decode_battery_level, short)):
        with suppress(BleDecodeError):
            decode(arg)
    values = {uuids.MODEL_NUMBER: data, uuids.SERIAL_NUMBER: short, uuids.FIRMWARE_REVISION: b"1"}
    with suppress(BleDecodeError):
        decode_device_information(values)
