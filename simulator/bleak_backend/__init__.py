"""The simulator as a bleak backend: virtual patches that bleak's public API scans and connects.

``BleakScanner(backend=VirtualBleakScanner.bind(radio))`` and
``BleakClient(device, backend=VirtualBleakClient)`` run the gateway's real BLE code against a
:class:`VirtualRadio` instead of BlueZ.
"""

from simulator.bleak_backend.client import VirtualBleakClient
from simulator.bleak_backend.peripheral import Emission, VirtualPatch
from simulator.bleak_backend.radio import DeviceHandle, Link, VirtualRadio
from simulator.bleak_backend.scanner import VirtualBleakScanner
from simulator.bleak_backend.world import patch_address, patch_key, populate

__all__ = [
    "DeviceHandle",
    "Emission",
    "Link",
    "VirtualBleakClient",
    "VirtualBleakScanner",
    "VirtualPatch",
    "VirtualRadio",
    "patch_address",
    "patch_key",
    "populate",
]
