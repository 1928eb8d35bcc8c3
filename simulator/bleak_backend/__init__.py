"""The simulator as a bleak backend: virtual patches that bleak's public API scans and connects.

``BleakScanner(backend=VirtualBleakScanner.bind(radio))`` and
``BleakClient(device, backend=VirtualBleakClient)`` run the gateway's real BLE code against a
:class:`VirtualRadio` instead of BlueZ; the radio's :class:`VirtualBlueZ` stands in for
bluetoothd (adapters, device objects, its known failure modes) and becomes bleak's BlueZ manager
for the event loop, so bleak-retry-connector's BlueZ helpers run against it too.
"""

from simulator.bleak_backend.bluez import BlueZErrorForm, Stall, VirtualAdapter, VirtualBlueZ
from simulator.bleak_backend.client import VirtualBleakClient
from simulator.bleak_backend.clock import VirtualGatewayClock
from simulator.bleak_backend.peripheral import Emission, Transmission, VirtualPatch
from simulator.bleak_backend.radio import Link, VirtualRadio
from simulator.bleak_backend.scanner import VirtualBleakScanner
from simulator.bleak_backend.world import patch_address, patch_key, populate

__all__ = [
    "BlueZErrorForm",
    "Emission",
    "Link",
    "Stall",
    "Transmission",
    "VirtualAdapter",
    "VirtualBleakClient",
    "VirtualBleakScanner",
    "VirtualBlueZ",
    "VirtualGatewayClock",
    "VirtualPatch",
    "VirtualRadio",
    "patch_address",
    "patch_key",
    "populate",
]
