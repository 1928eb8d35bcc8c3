"""Standard GATT characteristics the patch exposes: Battery Level and Device Information."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from contract.ble import uuids
from contract.ble.errors import BleDecodeError, BleEncodeError

MAX_ATTRIBUTE_LEN: Final = 512  # the ATT limit on any attribute value


def encode_battery_level(percent: int) -> bytes:
    """Battery Level (0x2A19): one byte, 0-100 %."""
    if not 0 <= percent <= 100:
        raise BleEncodeError(f"battery level {percent} outside 0..100")
    return bytes([percent])


def decode_battery_level(data: bytes) -> int:
    """Battery Level (0x2A19) in %."""
    if len(data) != 1:
        raise BleDecodeError(f"battery level is {len(data)} bytes, expected 1")
    if data[0] > 100:
        raise BleDecodeError(f"battery level {data[0]} above 100 %")
    return data[0]


def encode_utf8s(text: str) -> bytes:
    """A GATT utf8s value (no terminator)."""
    if "\x00" in text:
        raise BleEncodeError("utf8s values cannot contain NUL")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise BleEncodeError("text is not encodable as UTF-8 (lone surrogate)") from None
    if len(data) > MAX_ATTRIBUTE_LEN:
        raise BleEncodeError(f"{len(data)} bytes exceed the {MAX_ATTRIBUTE_LEN}-byte ATT limit")
    return data


def decode_utf8s(data: bytes) -> str:
    """A GATT utf8s value; trailing NULs that some stacks pad with are dropped."""
    if len(data) > MAX_ATTRIBUTE_LEN:
        raise BleDecodeError(f"{len(data)} bytes exceed the {MAX_ATTRIBUTE_LEN}-byte ATT limit")
    trimmed = bytes(data).rstrip(b"\x00")
    if b"\x00" in trimmed:
        raise BleDecodeError("NUL inside a utf8s value")
    try:
        return trimmed.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BleDecodeError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    """What the installed-base archive records about a patch."""

    model_number: str
    serial_number: str
    firmware_revision: str
    hardware_revision: str = ""  # optional in the service: "" when the patch has none


_DIS_FIELDS: Final = (
    ("model_number", uuids.MODEL_NUMBER),
    ("serial_number", uuids.SERIAL_NUMBER),
    ("firmware_revision", uuids.FIRMWARE_REVISION),
)
_OPTIONAL_FIELDS: Final = (("hardware_revision", uuids.HARDWARE_REVISION),)


def decode_device_information(values: Mapping[str, bytes]) -> DeviceInformation:
    """Parse the Device Information characteristics read, keyed by their 128-bit UUID."""
    by_uuid = {key.lower(): value for key, value in values.items()}
    fields: dict[str, str] = {}
    for name, uuid in _DIS_FIELDS:
        raw = by_uuid.get(uuid)
        if raw is None:
            raise BleDecodeError(f"device information lacks {name.replace('_', ' ')}")
        text = decode_utf8s(raw)
        if not text.strip():
            raise BleDecodeError(f"device information has an empty {name.replace('_', ' ')}")
        fields[name] = text
    for name, uuid in _OPTIONAL_FIELDS:
        if (raw := by_uuid.get(uuid)) is not None:
            fields[name] = decode_utf8s(raw).strip()
    return DeviceInformation(**fields)


def encode_device_information(info: DeviceInformation) -> dict[str, bytes]:
    """The Device Information characteristic values, keyed by their 128-bit UUID."""
    out: dict[str, bytes] = {}
    for name, uuid in _DIS_FIELDS:
        text: str = getattr(info, name)
        if not text.strip():
            raise BleEncodeError(f"empty {name.replace('_', ' ')}")
        out[uuid] = encode_utf8s(text)
    for name, uuid in _OPTIONAL_FIELDS:
        if text := getattr(info, name):
            out[uuid] = encode_utf8s(text)
    return out
