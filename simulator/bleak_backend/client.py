"""``VirtualBleakClient``: a bleak client backend whose peer is a patch on a VirtualRadio.

A connect goes through the adapter named by the device's BlueZ path (as on BlueZ), fails the
way bluetoothd fails it (no device object, adapter powered off, another LE connect in flight on
the controller, no controller slot) and adopts a stale link BlueZ already holds to the patch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDeviceNotFoundError, BleakError

from simulator.bleak_backend.bluez import BlueZErrorForm, VirtualAdapter
from simulator.bleak_backend.gatt_table import ATT_MTU, build_services
from simulator.bleak_backend.radio import Link, VirtualRadio


class VirtualBleakClient(BaseBleakClient):
    """Connects to a virtual patch; the radio comes from the BLEDevice a virtual scan returned,
    from ``radio=``, or from ``bind(radio)``."""

    radio: ClassVar[VirtualRadio | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        radio: VirtualRadio | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = getattr(address_or_ble_device, "details", None)
        details = details if isinstance(details, dict) else {}
        chosen = radio or details.get("radio") or type(self).radio or _installed_radio()
        if chosen is None:
            raise TypeError("VirtualBleakClient needs a radio: scan it, pass radio= or bind()")
        self._radio: VirtualRadio = chosen
        self.address = self.address.upper()
        self._path: str | None = details.get("path")
        self._adapter_name: str | None = (kwargs.get("bluez") or {}).get("adapter")
        self._link: Link | None = None

    @classmethod
    def bind(cls, radio: VirtualRadio) -> type[VirtualBleakClient]:
        """A subclass tied to ``radio``, to hand to ``BleakClient(backend=...)``."""
        return type(cls.__name__, (cls,), {"radio": radio})

    @property
    def name(self) -> str:
        """The patch's advertised name."""
        patch = self._radio.patches.get(self.address)
        return patch.local_name if patch else self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        """The negotiated ATT MTU."""
        return ATT_MTU

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        return self._link is not None and self._radio.links.get(self.address) is self._link

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect; an absent or busy patch times out as a real controller's attempt would."""
        radio, bluez = self._radio, self._radio.bluez
        bluez.install()
        adapter = self._adapter()
        path = self._path or bluez.device_path(adapter, self.address)
        if not adapter.powered:
            raise BlueZErrorForm.NOT_READY.error()
        if path not in bluez._properties:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        held = radio.links.get(self.address)
        if held is not None and held.client is None and held.adapter is adapter:
            self._up(radio.adopt(self, self.address, adapter), path)
            return
        adapter.in_flight += 1
        adapter.max_concurrent_connects = max(adapter.max_concurrent_connects, adapter.in_flight)
        try:
            if adapter.foreign_connects > 0:  # another process's LE connect is pending
                adapter.foreign_connects -= 1
                raise BlueZErrorForm.IN_PROGRESS.error()
            if adapter.one_pending_connect and adapter.connecting is not None:
                raise BlueZErrorForm.IN_PROGRESS.error()
            adapter.connecting = self.address
            try:
                await self._attempt(float(kwargs.get("timeout", self._timeout)), adapter, path)
            finally:
                adapter.connecting = None
        finally:
            adapter.in_flight -= 1

    async def _attempt(self, wait_s: float, adapter: VirtualAdapter, path: str) -> None:
        radio = self._radio
        patch = radio.reachable(self.address)
        if patch is None:
            await asyncio.sleep(min(wait_s, radio.connect_timeout_s))
            raise TimeoutError(f"{self.address}: no connectable patch answered")
        if radio.connect_latency_s:
            await asyncio.sleep(radio.connect_latency_s)
        self._up(radio.connect(self, patch, adapter), path)

    def _up(self, link: Link, path: str) -> None:
        # BlueZ resolves services from its cache, stale or not, until the device is removed;
        # bleak keeps what it resolved in its own cache, as its BlueZ manager does.
        bluez = self._radio.bluez
        link.services = build_services(path, stale=path in bluez.stale_gatt)
        for service in link.services:
            service_path, props = service.obj
            bluez._properties[service_path] = {"org.bluez.GattService1": props}
        bluez._services_cache[path] = link.services
        self._link = link
        self.services = link.services

    def _adapter(self) -> VirtualAdapter:
        bluez = self._radio.bluez
        if self._path is not None:
            name = self._path.split("/")[3]
            if name not in bluez.adapters:
                raise BleakDeviceNotFoundError(self.address, f"adapter '{name}' not found")
            return bluez.adapters[name]
        if self._adapter_name is not None:
            return bluez.adapter(self._adapter_name)
        return bluez.adapter(bluez.get_default_adapter().rsplit("/", 1)[-1])

    async def disconnect(self) -> None:
        """Disconnect at our request; on BlueZ the disconnected callback fires for this too."""
        self._radio.disconnect(self)
        self._link = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Patches are bonded at provisioning; nothing to do."""

    async def unpair(self) -> None:
        """Nothing to undo; see ``pair``."""

    def on_link_lost(self) -> None:
        """Called by the radio when the link drops under us."""
        self._link = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    def _live_link(self) -> Link:
        if not self.is_connected or self._link is None:
            raise BleakError(f"{self.address}: not connected")
        return self._link

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic's value from the patch."""
        link = self._live_link()
        if link.patch.refuses_read(characteristic.uuid.lower()):
            raise BlueZErrorForm.NOT_PERMITTED.error()
        value = link.patch.read(characteristic.uuid.lower())
        if value is None or "read" not in characteristic.properties:
            raise BleakError(f"{characteristic.uuid}: read not permitted")
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a CCCD: whether notifications are on."""
        link = self._live_link()
        on = descriptor.characteristic_uuid.lower() in link.subscriptions
        return bytearray(b"\x01\x00" if on else b"\x00\x00")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """The patch has no writable characteristics."""
        self._live_link()
        raise BleakError(f"{characteristic.uuid}: write not permitted")

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Writing a CCCD directly is refused; use start_notify, as bleak recommends."""
        self._live_link()
        raise BleakError(f"descriptor {descriptor.handle}: write through start_notify instead")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe to notifications or indications of ``characteristic``."""
        link = self._live_link()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"{characteristic.uuid}: neither notifies nor indicates")
        link.subscriptions[characteristic.uuid.lower()] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe from ``characteristic``."""
        link = self._live_link()
        link.subscriptions.pop(characteristic.uuid.lower(), None)


def _installed_radio() -> VirtualRadio | None:
    """The radio whose virtual BlueZ is bleak's manager in this event loop, if any."""
    from bleak.backends.bluezdbus import manager

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    owner = getattr(manager._global_instances.get(loop), "radio", None)
    return owner if isinstance(owner, VirtualRadio) else None
