"""One-off GATT reads over a connected client: Device Information and Battery Level."""

from __future__ import annotations

from bleak import BleakClient

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation, decode_battery_level, decode_device_information

_DIS = (uuids.MODEL_NUMBER, uuids.SERIAL_NUMBER, uuids.FIRMWARE_REVISION)


async def read_device_information(client: BleakClient) -> DeviceInformation:
    """Model, serial and firmware revision (BleDecodeError if the patch sends nonsense)."""
    values = {uuid: bytes(await client.read_gatt_char(uuid)) for uuid in _DIS}
    return decode_device_information(values)


async def read_battery(client: BleakClient) -> int:
    """Battery Level in %."""
    return decode_battery_level(bytes(await client.read_gatt_char(uuids.BATTERY_LEVEL)))
