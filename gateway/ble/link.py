"""Hold one connection to one patch: subscribe first, read what is due on the side, stream frames.

The measurement subscription comes before anything else (then Health Thermometer indications,
when the patch exposes that service): Device Information and Battery Level
are best-effort (a patch that answers NotPermitted, or garbage, still streams). A link that brings
no authentic frame for ``link_silence_s`` is hung up, so a mute patch does not keep a slot. A
missing measurement characteristic means BlueZ resolved a stale GATT cache: the link ends with
``StaleGattCache`` and the caller clears the cache once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakCharacteristicNotFoundError, BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from contract.ble import uuids
from contract.ble.errors import BleDecodeError
from contract.ble.gatt import DeviceInformation
from gateway.ble.config import BleConfig
from gateway.ble.gatt_reads import read_battery, read_device_information

log = logging.getLogger(__name__)


class StaleGattCache(BleakError):
    """The patch measurement characteristic is missing: BlueZ's GATT cache is out of date."""


class Ended(Enum):
    """Why a link ended."""

    DROPPED = "dropped"  # the link went down (supervision timeout, patch, adapter)
    BAD_FRAMES = "bad_frames"  # we hung up: too many refused frames in a row
    SILENT = "silent"  # we hung up: no authentic frame for too long


class LinkOwner(Protocol):
    """What a link reports to, and asks, the acquisition that started it."""

    def on_connected(self, address: str) -> None:
        """The link is up."""

    def on_frame(self, address: str, data: bytes) -> bool:
        """A notification arrived; False asks the link to hang up (too many bad frames)."""
        ...

    def frame_age(self, address: str) -> float:
        """Seconds since the link brought an authentic frame (or came up)."""
        ...

    def on_temperature(self, address: str, data: bytes) -> None:
        """A Health Thermometer indication arrived."""

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

    def on_read_failed(self, address: str, what: str, exc: Exception) -> None:
        """A best-effort read failed; the link goes on."""


async def open_link(
    device: BLEDevice, config: BleConfig, on_lost: Callable[[], None]
) -> BleakClient:
    """Connect (bleak-retry-connector's retries); raise if it cannot be set up."""
    return await establish_connection(
        BleakClientWithServiceCache,
        device,
        device.name or device.address,
        disconnected_callback=lambda _client: on_lost(),
        max_attempts=config.connect_attempts,
        backend=config.client_backend,
    )


async def hold_link(
    client: BleakClient, owner: LinkOwner, config: BleConfig, lost: asyncio.Event
) -> Ended:
    """Stream until the link drops or we hang up; StaleGattCache if the table is outdated."""
    address = client.address.upper()
    hang_up: list[Ended] = []

    def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
        if not owner.on_frame(address, bytes(data)) and not hang_up:
            hang_up.append(Ended.BAD_FRAMES)
            lost.set()

    try:
        owner.on_connected(address)
        try:
            await client.start_notify(uuids.PATCH_MEASUREMENT, on_notify)
        except BleakCharacteristicNotFoundError as exc:
            raise StaleGattCache(f"{address}: {exc}") from exc
        if client.services.get_characteristic(uuids.TEMPERATURE_MEASUREMENT) is not None:
            # The standard thermometer too: what it says beyond the frame is kept (intake).
            await client.start_notify(
                uuids.TEMPERATURE_MEASUREMENT,
                lambda _c, data: owner.on_temperature(address, bytes(data)),
            )
        await _best_effort(client, owner, address, info=True)
        while not lost.is_set():
            if owner.frame_age(address) > config.link_silence_s:
                hang_up.append(Ended.SILENT)
                break
            await _best_effort(client, owner, address, info=False)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(config.wall_poll_s):
                    await lost.wait()
    finally:
        if client.is_connected:
            # Shielded so a cancelled gateway still frees the patch's (and adapter's) slot.
            with contextlib.suppress(BleakError, TimeoutError, EOFError):
                await asyncio.shield(client.disconnect())
    return hang_up[0] if hang_up else Ended.DROPPED


async def _best_effort(client: BleakClient, owner: LinkOwner, address: str, *, info: bool) -> None:
    """Device Information (once) and Battery Level (when due); failures are only counted."""
    try:
        if info and owner.wants_info(address):
            owner.on_info(address, await read_device_information(client))
    except (BleakError, BleDecodeError, TimeoutError) as exc:
        owner.on_read_failed(address, "device_information", exc)
    try:
        if owner.battery_due(address):
            owner.on_battery(address, await read_battery(client))
    except (BleakError, BleDecodeError, TimeoutError) as exc:
        owner.on_read_failed(address, "battery", exc)
