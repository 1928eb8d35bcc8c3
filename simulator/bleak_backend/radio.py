"""The virtual radio: a world of patches, a simulated clock, and who hears or is linked to whom."""

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
from bleak.exc import BleakError

from contract.ble import uuids
from simulator.bleak_backend.gatt_table import build_services
from simulator.bleak_backend.peripheral import Emission, VirtualPatch
from simulator.fleet import DEFAULT_START_US

if TYPE_CHECKING:
    from simulator.bleak_backend.client import VirtualBleakClient
    from simulator.bleak_backend.scanner import VirtualBleakScanner

NotifyCallback = Callable[[bytearray], None]


class _Event(Enum):
    MEASURE = 1
    ADVERT = 2


@dataclass(frozen=True, slots=True)
class DeviceHandle:
    """What ``BLEDevice.details`` carries: the way back from a scan result to its radio."""

    radio: VirtualRadio
    address: str


@dataclass
class Link:
    """A live connection between one client and one patch."""

    client: VirtualBleakClient
    patch: VirtualPatch
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
        self.max_connections: int | None = None  # the controller's own limit, if any
        self.peak_connections = 0
        self.connect_latency_s = 0.0  # wall seconds a successful connect takes
        self.connect_timeout_s = 0.05  # wall seconds before connecting to an absent patch fails
        self.connects = 0
        self._scanners: set[VirtualBleakScanner] = set()
        self._queue: list[tuple[float, int, str, _Event]] = []
        self._order = 0

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
            link.client.on_link_lost()

    def leave(self, address: str) -> None:
        """The patch goes out of range: no adverts, no connections, its link drops."""
        self.patch(address).present = False
        self.drop(address)

    def come_back(self, address: str) -> None:
        """The patch is in range again."""
        self.patch(address).present = True

    def inject(self, address: str, advert: AdvertisementData) -> None:
        """Transmit ``advert`` under ``address`` now: a replaying or spoofing attacker."""
        for scanner in list(self._scanners):
            scanner.hear(self, address.upper(), advert)

    @property
    def connected(self) -> int:
        """How many patches are linked now."""
        return len(self.links)

    # -- the backend's side --------------------------------------------------------------------

    def attach_scanner(self, scanner: VirtualBleakScanner) -> None:
        """Start delivering adverts to ``scanner``."""
        self._scanners.add(scanner)

    def detach_scanner(self, scanner: VirtualBleakScanner) -> None:
        """Stop delivering adverts to ``scanner``."""
        self._scanners.discard(scanner)

    def device(self, address: str) -> BLEDevice:
        """A BLEDevice for ``address`` whose details lead back to this radio."""
        patch = self.patches.get(address.upper())
        name = f"vigil {patch.device_id}" if patch else None
        return BLEDevice(address.upper(), name, DeviceHandle(self, address.upper()))

    def reachable(self, address: str) -> VirtualPatch | None:
        """The connectable patch at ``address`` if one is in range and free, else None."""
        patch = self.patches.get(address.upper())
        if patch is None or not (patch.present and patch.connectable and patch.advertising):
            return None
        return None if patch.address in self.links else patch

    def connect(self, client: VirtualBleakClient, patch: VirtualPatch) -> Link:
        """Link ``client`` to ``patch``; BleakError when the controller is out of slots."""
        if self.max_connections is not None and len(self.links) >= self.max_connections:
            # Wording as bleak-retry-connector recognises an out-of-slots failure.
            raise BleakError("No available connection slot on the adapter")
        link = Link(client, patch)
        self.links[patch.address] = link
        self.connects += 1
        self.peak_connections = max(self.peak_connections, len(self.links))
        return link

    def disconnect(self, client: VirtualBleakClient) -> None:
        """End the link ``client`` holds, at the client's request (no callback)."""
        for address, link in list(self.links.items()):
            if link.client is client:
                del self.links[address]

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
        if notify is not None:
            for data in patch.frames_for(emission):
                notify(bytearray(data))
        indicate = link.subscriptions.get(uuids.TEMPERATURE_MEASUREMENT)
        if indicate is not None:
            indicate(bytearray(patch.temperature_indication(emission)))

    def _advertise(self, patch: VirtualPatch) -> None:
        if not self._scanners or (
            patch.address in self.links and not patch.advertise_while_connected
        ):
            return
        advert = patch.advert()
        if advert is None:
            return
        for scanner in list(self._scanners):
            scanner.hear(self, patch.address, advert)

    def last_emission(self, address: str) -> Emission | None:
        """The most recent measurement the patch at ``address`` made."""
        emissions = self.patch(address).emissions
        return emissions[-1] if emissions else None
