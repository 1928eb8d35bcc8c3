"""One-off GATT reads over a connected client: Device Information and Battery Level."""

from __future__ import annotations

from bleak import BleakClient

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation, decode_battery_level, decode_device_information

_DIS = (uuids.MODEL_NUMBER, uuids.SERIAL_NUMBER, uuids.FIRMWARE_REVISION)


async def read_device_information(client: BleakClient) -> DeviceInformation:
    """Model, serial, firmware and hardware revision (BleDecodeError on nonsense)."""
    values = {uuid: bytes(await client.read_gatt_char(uuid)) for uuid in _DIS}
    # Hardware Revision is optional in the service: read only when the patch exposes it.
    if client.services.get_characteristic(uuids.HARDWARE_REVISION) is not None:
        values[uuids.HARDWARE_REVISION] = bytes(
            await client.read_gatt_char(uuids.HARDWARE_REVISION)
        )
    return decode_device_information(values)


async def read_battery(client: BleakClient) -> int:
    """Battery Level in %."""
    return decode_battery_level(bytes(await client.read_gatt_char(uuids.BATTERY_LEVEL)))
