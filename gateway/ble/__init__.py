"""BLE acquisition: the gateway's real bleak code path from patches to readings.

``BleAcquisition(paired, BleConfig(...)).run(sink)`` scans, links to paired patches within the
connection-slot budget, authenticates and replay-checks every frame and advert, and hands
readings to the sink. Backends default to the OS stack (BlueZ); tests pass the simulator's.
"""

from gateway.ble.acquisition import BatteryLevel, BleAcquisition
from gateway.ble.allowlist import PairedPatch, allowlist
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.intake import PatchIntake
from gateway.ble.marks import ReplayMarks
from gateway.ble.presence import Presence
from gateway.ble.slots import ConnectionSlots

__all__ = [
    "BatteryLevel",
    "BleAcquisition",
    "BleConfig",
    "BleCounters",
    "ConnectionSlots",
    "PairedPatch",
    "PatchIntake",
    "Presence",
    "RejectReason",
    "ReplayMarks",
    "allowlist",
]
