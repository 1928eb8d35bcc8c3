"""UUIDs of the smart-dressing patch profile: vigil's custom service and the SIG ones it uses."""

from __future__ import annotations

from typing import Final

_SIG_BASE: Final = "0000{:04x}-0000-1000-8000-00805f9b34fb"


def sig_uuid(short: int) -> str:
    """The full 128-bit form of a 16-bit Bluetooth SIG UUID, lower case as bleak reports it."""
    return _SIG_BASE.format(short)


# vigil patch service (custom, 128-bit). The 0x7a1e prefix is fixed; the 16 bits after it count.
PATCH_SERVICE: Final = "7a1e0001-5d1b-4c8e-9f3a-2b6c7d8e9f10"
PATCH_MEASUREMENT: Final = "7a1e0002-5d1b-4c8e-9f3a-2b6c7d8e9f10"

# BTHome v2 passive advertising: service data under this 16-bit UUID.
BTHOME_UUID16: Final = 0xFCD2
BTHOME_SERVICE_DATA: Final = sig_uuid(BTHOME_UUID16)

# Health Thermometer.
HEALTH_THERMOMETER_SERVICE: Final = sig_uuid(0x1809)
TEMPERATURE_MEASUREMENT: Final = sig_uuid(0x2A1C)

# Battery.
BATTERY_SERVICE: Final = sig_uuid(0x180F)
BATTERY_LEVEL: Final = sig_uuid(0x2A19)

# Device Information; these strings feed the installed-base archive.
DEVICE_INFORMATION_SERVICE: Final = sig_uuid(0x180A)
MODEL_NUMBER: Final = sig_uuid(0x2A24)
SERIAL_NUMBER: Final = sig_uuid(0x2A25)
FIRMWARE_REVISION: Final = sig_uuid(0x2A26)
HARDWARE_REVISION: Final = sig_uuid(0x2A27)
