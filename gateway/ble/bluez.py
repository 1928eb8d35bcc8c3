"""The gateway's view of BlueZ: adapters by MAC, links BlueZ holds, adapter power cycles.

It reads the D-Bus object tree that bleak's BlueZ manager mirrors (the manager
bleak-retry-connector hands out) and calls bluetoothd on the same bus. Where there is no BlueZ
(no system bus, another OS) ``open_bluez`` returns None and the gateway runs one scanner on the
platform's default adapter, without adapter following, power cycles or foreign-link counting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak.backends.device import BLEDevice

log = logging.getLogger(__name__)

ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
DEFAULT_ADAPTER = "default"  # the key of the single adapter used without BlueZ


class BlueZRestarted(Exception):
    """bluetoothd restarted (org.bluez changed owner): bleak's mirror of its objects is stale."""


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One controller as BlueZ shows it; ``address`` (its MAC) survives a change of name."""

    name: str
    address: str
    powered: bool
    discovering: bool


class BlueZ:
    """Adapters and device objects of the running bluetoothd."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    def adapters(self) -> dict[str, AdapterInfo]:
        """Adapters that can be a BLE central, by MAC."""
        found: dict[str, AdapterInfo] = {}
        for path, ifaces in list(self._manager._properties.items()):
            props = ifaces.get(ADAPTER_IFACE)
            if props is None or "central" not in props.get("Roles", ["central"]):
                continue
            address = str(props.get("Address", "")).upper()
            found[address] = AdapterInfo(
                path.rsplit("/", 1)[-1],
                address,
                bool(props.get("Powered")),
                bool(props.get("Discovering")),
            )
        return found

    def discovering(self, adapter: str) -> bool | None:
        """Adapter1.Discovering of ``adapter`` (None if BlueZ has no such adapter)."""
        props = self._manager._properties.get(f"/org/bluez/{adapter}", {}).get(ADAPTER_IFACE)
        return None if props is None else bool(props.get("Discovering"))

    def has_device(self, path: str) -> bool:
        """Whether BlueZ has the device object at ``path`` (it goes with RemoveDevice)."""
        return DEVICE_IFACE in self._manager._properties.get(path, {})

    def connected(self, adapter: str) -> list[BLEDevice]:
        """Devices BlueZ holds a link to through ``adapter`` (ours, stale ones, others')."""
        prefix = f"/org/bluez/{adapter}/"
        devices: list[BLEDevice] = []
        for path, ifaces in list(self._manager._properties.items()):
            props = ifaces.get(DEVICE_IFACE)
            if path.startswith(prefix) and props is not None and props.get("Connected"):
                name = props.get("Alias")
                devices.append(BLEDevice(props["Address"], name, {"path": path, "props": props}))
        return devices

    async def watch_restarts(self, on_restart: Callable[[], None]) -> bool:
        """Call ``on_restart`` when org.bluez changes owner; False if this bus cannot tell."""
        bus = self._manager._bus
        add_handler = getattr(bus, "add_message_handler", None)
        if add_handler is None:
            return False
        from bleak.backends.bluezdbus.signals import MatchRules, add_match
        from bleak.backends.bluezdbus.utils import assert_reply

        def handler(message: Any) -> None:
            body = message.body
            if message.member == "NameOwnerChanged" and body and body[0] == "org.bluez":
                on_restart()

        add_handler(handler)
        # Only the bus daemon sends this signal (bleak's MatchRules cannot take a sender).
        rules = MatchRules(
            interface="org.freedesktop.DBus",
            member="NameOwnerChanged",
            arg0="org.bluez",
        )
        assert_reply(await add_match(bus, rules))
        return True

    async def power_cycle(self, adapter: str, off_s: float) -> None:
        """Power the adapter off and on again (``Adapter1.Powered``); BleakError if refused."""
        await self._set_powered(adapter, False)
        await asyncio.sleep(off_s)
        await self._set_powered(adapter, True)

    async def _set_powered(self, adapter: str, on: bool) -> None:
        from bleak.backends.bluezdbus.utils import assert_reply
        from dbus_fast import Message, Variant

        reply = await self._manager._bus.call(
            Message(
                destination="org.bluez",
                path=f"/org/bluez/{adapter}",
                interface="org.freedesktop.DBus.Properties",
                member="Set",
                signature="ssv",
                body=[ADAPTER_IFACE, "Powered", Variant("b", on)],
            )
        )
        assert_reply(reply)


async def open_bluez() -> BlueZ | None:
    """The running BlueZ, or None where there is none (no system bus, not Linux)."""
    try:
        from bleak_retry_connector.bleak_manager import get_global_bluez_manager_with_timeout
    except ImportError:  # pragma: no cover - not Linux: no dbus_fast
        return None
    manager = await get_global_bluez_manager_with_timeout()
    return None if manager is None else BlueZ(manager)
