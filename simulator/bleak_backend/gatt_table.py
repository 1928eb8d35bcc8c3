"""The GATT table a virtual patch exposes, built from bleak's own service objects."""

from __future__ import annotations

from typing import Final

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection

from contract.ble import uuids

CCCD: Final = uuids.sig_uuid(0x2902)  # Client Characteristic Configuration
ATT_MTU: Final = 247

_Chars = tuple[tuple[str, tuple[CharacteristicPropertyName, ...]], ...]

# (service, characteristics with properties) in handle order, as the patch firmware lays it out.
PATCH_GATT: Final[tuple[tuple[str, _Chars], ...]] = (
    (uuids.PATCH_SERVICE, ((uuids.PATCH_MEASUREMENT, ("notify",)),)),
    (uuids.HEALTH_THERMOMETER_SERVICE, ((uuids.TEMPERATURE_MEASUREMENT, ("indicate",)),)),
    (uuids.BATTERY_SERVICE, ((uuids.BATTERY_LEVEL, ("read", "notify")),)),
    (
        uuids.DEVICE_INFORMATION_SERVICE,
        (
            (uuids.MODEL_NUMBER, ("read",)),
            (uuids.SERIAL_NUMBER, ("read",)),
            (uuids.FIRMWARE_REVISION, ("read",)),
            (uuids.HARDWARE_REVISION, ("read",)),
        ),
    ),
)


def build_services(device_path: str = "", *, stale: bool = False) -> BleakGATTServiceCollection:
    """A fresh service collection for one connection; CCCDs follow notifying characteristics.

    Each service's ``obj`` is ``(D-Bus path, properties)`` under ``device_path``, as bleak's
    BlueZ backend builds them. ``stale``: the table an older firmware had (no Patch Measurement
    yet), as a stale BlueZ GATT cache still resolves it after a firmware update.
    """
    collection = BleakGATTServiceCollection()
    handle = 0
    for service_uuid, characteristics in PATCH_GATT:
        handle += 1
        props = {"UUID": service_uuid, "Device": device_path, "Primary": True}
        service = BleakGATTService(
            (f"{device_path}/service{handle:04x}", props), handle, service_uuid
        )
        collection.add_service(service)
        for char_uuid, properties in characteristics:
            if stale and char_uuid == uuids.PATCH_MEASUREMENT:
                continue
            handle += 2  # the declaration takes one handle, the value the next
            char = BleakGATTCharacteristic(
                None, handle, char_uuid, list(properties), lambda: ATT_MTU - 3, service
            )
            collection.add_characteristic(char)
            if "notify" in properties or "indicate" in properties:
                handle += 1
                collection.add_descriptor(BleakGATTDescriptor(None, handle, CCCD, char))
    return collection
