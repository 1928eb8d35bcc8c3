"""Hold one connection to one patch: connect with backoff, read what is due, stream frames."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation
from gateway.ble.config import BleConfig
from gateway.ble.gatt_reads import read_battery, read_device_information


class LinkOwner(Protocol):
    """What a link reports to, and asks, the acquisition that started it."""

    def on_connected(self, address: str) -> None:
        """The link is up."""

    def on_frame(self, address: str, data: bytes) -> bool:
        """A notification arrived; False asks the link to hang up (too many bad frames)."""
        ...

    def wants_info(self, address: str) -> bool:
        """Whether Device Information still needs reading."""
        ...

    def on_info(self, address: str, info: DeviceInformation) -> None:
        """Device Information was read."""

    def battery_due(self, address: str) -> bool:
        """Whether Battery Level should be read now."""
        ...

    def on_battery(self, address: str, percent: int) -> None:
        """Battery Level was read."""


async def hold_link(device: BLEDevice, owner: LinkOwner, config: BleConfig) -> None:
    """Return when the link drops or we hang up; raise if it cannot be set up."""
    address = device.address.upper()
    ended = asyncio.Event()
    client = await establish_connection(
        BleakClient,
        device,
        device.name or address,
        disconnected_callback=lambda _client: ended.set(),
        max_attempts=config.connect_attempts,
        backend=config.client_backend,
    )
    owner.on_connected(address)

    def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
        if not owner.on_frame(address, bytes(data)):
            ended.set()

    try:
        if owner.wants_info(address):
            owner.on_info(address, await read_device_information(client))
        await client.start_notify(uuids.PATCH_MEASUREMENT, on_notify)
        while not ended.is_set():
            if owner.battery_due(address):
                owner.on_battery(address, await read_battery(client))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(config.wall_poll_s):
                    await ended.wait()
    finally:
        if client.is_connected:
            # Shielded so a cancelled gateway still frees the patch's (and adapter's) slot.
            with contextlib.suppress(BleakError, TimeoutError):
                await asyncio.shield(client.disconnect())
