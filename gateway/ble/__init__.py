"""BLE acquisition: the gateway's real bleak code path from patches to readings.

``BleAcquisition(paired, BleConfig(...)).run(sink)`` scans every adapter, links to paired patches
within each adapter's connection slots, authenticates and replay-checks every frame and advert,
and hands readings to the sink — held and re-stamped while the clock cannot be trusted. It
recovers from BlueZ's known failure modes and reports what it cannot fix as gateway faults.
Backends default to the OS stack (BlueZ); tests pass the simulator's.
"""

from gateway.ble.acquisition import BatteryLevel, BleAcquisition
from gateway.ble.allowlist import PairedPatch, allowlist
from gateway.ble.clock import ClockState, SystemTime, TimeSource
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.faults import Fault, FaultReport
from gateway.ble.intake import PatchIntake
from gateway.ble.marks import ReplayMarks
from gateway.ble.presence import Presence

__all__ = [
    "BatteryLevel",
    "BleAcquisition",
    "BleConfig",
    "BleCounters",
    "ClockState",
    "Fault",
    "FaultReport",
    "PairedPatch",
    "PatchIntake",
    "Presence",
    "RejectReason",
    "ReplayMarks",
    "SystemTime",
    "TimeSource",
    "allowlist",
]
