"""The virtual radio: a world of patches, a simulated clock, and who hears or is linked to whom.

Patches transmit advert and scan-response bytes (``simulator.bleak_backend.air``); the virtual
BlueZ (``radio.bluez``) decides which adapter hears what and when its scanners are called back.
Links belong to an adapter; a link without a client is a stale one (left by a crashed process).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.backends.service import BleakGATTServiceCollection

from contract.ble import uuids
from simulator.bleak_backend.air import AirData
from simulator.bleak_backend.bluez import BlueZErrorForm, VirtualAdapter, VirtualBlueZ
from simulator.bleak_backend.clock import VirtualGatewayClock
from simulator.bleak_backend.gatt_table import build_services
from simulator.bleak_backend.peripheral import Emission, VirtualPatch
from simulator.fleet import DEFAULT_START_US

if TYPE_CHECKING:
    from simulator.bleak_backend.client import VirtualBleakClient

NotifyCallback = Callable[[bytearray], None]


class _Event(Enum):
    MEASURE = 1
    ADVERT = 2


@dataclass
class Link:
    """A live connection between one client (None: a stale link nobody owns) and one patch."""

    client: VirtualBleakClient | None
    patch: VirtualPatch
    adapter: VirtualAdapter
    services: BleakGATTServiceCollection = field(default_factory=build_services)
    subscriptions: dict[str, NotifyCallback] = field(default_factory=dict)


class VirtualRadio:
    """Patches measure, advertise and notify as simulated time advances; scanners and clients
    (the bleak backend) hear and link to them. Nothing happens between ``advance`` calls."""

    def __init__(self, *, start_us: int = DEFAULT_START_US) -> None:
        self.start_us = start_us
        self.now_s = 0.0
        self.patches: dict[str, VirtualPatch] = {}
        self.links: dict[str, Link] = {}
        self.peak_connections = 0
        self.connect_latency_s = 0.0  # wall seconds a successful connect takes
        self.connect_timeout_s = 0.05  # wall seconds before connecting to an absent patch fails
        self.connects = 0
        self.bluez = VirtualBlueZ()
        self.bluez.radio = self
        self.bluez.on_power_off = self._adapter_down
        self.bluez.hangup = self._hangup
        self.gateway_clock = VirtualGatewayClock(self.monotonic, self.now_us)
        self._queue: list[tuple[float, int, str, _Event]] = []
        self._order = 0

    @property
    def max_connections(self) -> int | None:
        """The default adapter's own connection limit (None: unlimited)."""
        return self.default_adapter.max_connections

    @max_connections.setter
    def max_connections(self, limit: int | None) -> None:
        self.default_adapter.max_connections = limit

    @property
    def default_adapter(self) -> VirtualAdapter:
        """The first adapter (hci0 unless it was removed)."""
        return next(iter(self.bluez.adapters.values()))

    # -- clock ---------------------------------------------------------------------------------

    def monotonic(self) -> float:
        """Simulated seconds since the radio was made (a ``time.monotonic`` stand-in)."""
        return self.now_s

    def now_us(self) -> int:
        """Simulated wall-clock time in microseconds since the epoch."""
        return self.start_us + round(self.now_s * 1e6)

    def advance(self, seconds: float) -> None:
        """Run every measurement and advert due in the next ``seconds`` of simulated time."""
        until = self.now_s + seconds
        while self._queue and self._queue[0][0] <= until:
            due, _, address, event = heapq.heappop(self._queue)
            self.now_s = due
            patch = self.patches.get(address)
            if patch is None:
                continue  # removed since it was scheduled
            if event is _Event.MEASURE:
                self._measure(patch)
                self._schedule(due + patch.measure_every_s, address, event)
            else:
                self._advertise(patch)
                self._schedule(due + patch.advert_every_s, address, event)
        self.now_s = until

    async def play(
        self, seconds: float, *, step_s: float = 1.0, wall_step_s: float = 0.002
    ) -> None:
        """Advance ``seconds`` in steps, letting the event loop run between steps."""
        remaining = seconds
        while remaining > 1e-9:
            step = min(step_s, remaining)
            self.advance(step)
            remaining -= step
            await asyncio.sleep(wall_step_s)

    async def run(self, *, speed: float = 1.0, tick_s: float = 0.02) -> None:
        """Advance in step with the wall clock (``speed`` simulated seconds per second) forever."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            self.advance((now - last) * speed)
            last = now

    # -- world -------------------------------------------------------------------------------

    def add(self, patch: VirtualPatch, *, phase: float = 0.0) -> VirtualPatch:
        """Put ``patch`` on the air; ``phase`` (0..1) staggers its timers against the others."""
        self.patches[patch.address] = patch
        self._schedule(self.now_s + phase * patch.measure_every_s, patch.address, _Event.MEASURE)
        # Adverts trail the measurement slightly, so the first advert already carries data.
        self._schedule(
            self.now_s + phase * patch.advert_every_s + 1e-3, patch.address, _Event.ADVERT
        )
        return patch

    def extend(self, patches: Iterable[VirtualPatch]) -> None:
        """Add many patches with evenly spread phases."""
        items = list(patches)
        for i, patch in enumerate(items):
            self.add(patch, phase=i / max(1, len(items)))

    def patch(self, address: str) -> VirtualPatch:
        """The patch at ``address``."""
        return self.patches[address.upper()]

    def drop(self, address: str) -> None:
        """Break the patch's link as the radio would (supervision timeout): the client's
        disconnected callback fires."""
        link = self.links.pop(address.upper(), None)
        if link is not None:
            self._unlinked(link)

    def leave(self, address: str) -> None:
        """The patch goes out of range: no adverts, no connections, its link drops."""
        self.patch(address).present = False
        self.drop(address)

    def come_back(self, address: str) -> None:
        """The patch is in range again."""
        self.patch(address).present = True

    def inject(self, address: str, advert: AdvertisementData) -> None:
        """Transmit ``advert`` under ``address`` now: a replaying or spoofing attacker. BlueZ
        reports it only if it differs from what the device object holds (or its RSSI by 8 dB)."""
        air = AirData(
            None, advert.local_name, dict(advert.service_data), tuple(advert.service_uuids)
        )
        for adapter in list(self.bluez.adapters.values()):
            self.bluez.heard(adapter, address.upper(), air, None, advert.rssi)

    def stale_link(self, address: str, adapter: VirtualAdapter | None = None) -> None:
        """A link to ``address`` that a crashed (or SIGKILLed) gateway left up in BlueZ."""
        patch = self.patch(address)
        self._link(None, patch, adapter or self.default_adapter)

    def stale_gatt_cache(self, address: str) -> None:
        """The patch's firmware changed its GATT table; BlueZ's cache of it did not (every
        adapter's device object resolves the old table until it is removed)."""
        for adapter in self.bluez.adapters.values():
            self.bluez.stale_gatt.add(self.bluez.ensure_device(adapter, address))

    def foreign_link(self, address: str, adapter: VirtualAdapter | None = None) -> str:
        """Another process holds a link to a device (not a patch) through ``adapter``."""
        return self.bluez.foreign_link(adapter or self.default_adapter, address)

    @property
    def connected(self) -> int:
        """How many patches are linked now."""
        return len(self.links)

    # -- the backend's side --------------------------------------------------------------------

    def device(self, address: str, adapter: VirtualAdapter | None = None) -> BLEDevice:
        """A BLEDevice for ``address`` as BlueZ would give it (its device object is created)."""
        chosen = adapter or self.default_adapter
        path = self.bluez.ensure_device(chosen, address)
        props = self.bluez._properties[path]["org.bluez.Device1"]
        details = {"path": path, "props": props, "radio": self}
        return BLEDevice(address.upper(), props["Alias"], details)

    def reachable(self, address: str) -> VirtualPatch | None:
        """The connectable patch at ``address`` if one is in range and free, else None."""
        patch = self.patches.get(address.upper())
        if patch is None or not (patch.present and patch.connectable and patch.advertising):
            return None
        return None if patch.address in self.links else patch

    def connect(
        self, client: VirtualBleakClient, patch: VirtualPatch, adapter: VirtualAdapter
    ) -> Link:
        """Link ``client`` to ``patch`` through ``adapter``; the BlueZ form of an out-of-slots
        refusal when the controller has no room."""
        limit = adapter.max_connections
        if limit is not None and self.bluez.links_on(adapter) >= limit:
            raise BlueZErrorForm.OUT_OF_SLOTS.error()
        return self._link(client, patch, adapter)

    def adopt(self, client: VirtualBleakClient, address: str, adapter: VirtualAdapter) -> Link:
        """Connect on a device BlueZ already holds a stale link to: it answers at once."""
        link = self.links[address.upper()]
        assert link.client is None and link.adapter is adapter
        link.client = client
        link.subscriptions.clear()
        return link

    def disconnect(self, client: VirtualBleakClient) -> None:
        """End the link ``client`` holds, at its request; as on BlueZ, its callback fires."""
        for address, link in list(self.links.items()):
            if link.client is client:
                del self.links[address]
                self._unlinked(link)

    def _link(
        self, client: VirtualBleakClient | None, patch: VirtualPatch, adapter: VirtualAdapter
    ) -> Link:
        link = Link(client, patch, adapter)
        self.links[patch.address] = link
        self.connects += 1
        self.peak_connections = max(self.peak_connections, len(self.links))
        self.bluez.set_connected(self.bluez.ensure_device(adapter, patch.address), True)
        return link

    def _unlinked(self, link: Link) -> None:
        path = self.bluez.device_path(link.adapter, link.patch.address)
        if path in self.bluez._properties:
            self.bluez.set_connected(path, False)
        if link.client is not None:
            link.client.on_link_lost()

    def _hangup(self, path: str) -> None:
        """Device1.Disconnect or RemoveDevice from the bus: whoever holds the link loses it."""
        for address, link in list(self.links.items()):
            if self.bluez.device_path(link.adapter, address) == path:
                del self.links[address]
                self._unlinked(link)
                return
        if path in self.bluez._properties:
            self.bluez.set_connected(path, False)
        self.bluez.foreign.discard(path)

    def _adapter_down(self, adapter: VirtualAdapter) -> None:
        """Powered off or removed: every link through it drops."""
        for address, link in list(self.links.items()):
            if link.adapter is adapter:
                del self.links[address]
                self._unlinked(link)

    # -- events --------------------------------------------------------------------------------

    def _schedule(self, due: float, address: str, event: _Event) -> None:
        self._order += 1
        heapq.heappush(self._queue, (due, self._order, address, event))

    def _measure(self, patch: VirtualPatch) -> None:
        emission = patch.measure(self.now_s, self.now_us())
        link = self.links.get(patch.address)
        if emission is None or link is None:
            return
        notify = link.subscriptions.get(uuids.PATCH_MEASUREMENT)
        if notify is not None and patch.sends_frames:
            for data in patch.frames_for(emission):
                notify(bytearray(data))
        indicate = link.subscriptions.get(uuids.TEMPERATURE_MEASUREMENT)
        if indicate is not None:
            indicate(bytearray(patch.temperature_indication(emission)))

    def _advertise(self, patch: VirtualPatch) -> None:
        if patch.address in self.links and not patch.advertise_while_connected:
            return
        sent = patch.transmit()
        if sent is None:
            return
        heard = 0
        for adapter in list(self.bluez.adapters.values()):
            heard += self.bluez.heard(
                adapter, patch.address, sent.advert, sent.scan_response, sent.rssi
            )
        patch.heard(heard)

    def last_emission(self, address: str) -> Emission | None:
        """The most recent measurement the patch at ``address`` made."""
        emissions = self.patch(address).emissions
        return emissions[-1] if emissions else None
