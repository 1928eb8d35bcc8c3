"""Connections through one adapter: one connect in flight, strongest signal first, within slots.

BlueZ serialises LE connects per controller and answers a second one with ``InProgress`` (or the
controller with "Limited Resources"), so each adapter has one queue and one connect at a time.
Slots are per adapter: bleak-retry-connector's ``BleakSlotManager`` counts every link BlueZ holds
through the adapter, other processes' included, and our own count caps it with what the
controller has shown it can take. A patch that finds no slot waits in the queue — no per-patch
backoff — and is served by its adverts meanwhile; a slot coming free wakes the queue.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

log = logging.getLogger(__name__)


class Outcome(Enum):
    """How a connect attempt ended."""

    LINKED = "linked"  # a link task now holds the patch
    NO_SLOT = "no_slot"  # the controller had no room: wait for a slot, no backoff
    SKIPPED = "skipped"  # not tried (linked elsewhere, backing off) or to be retried on advert
    FAILED = "failed"  # the patch did not answer or refused: the owner backs it off


@dataclass(order=True)
class _Candidate:
    rank: tuple[int, int]  # (-RSSI, arrival): strongest first, then first come
    address: str = field(compare=False)
    device: BLEDevice = field(compare=False)
    at: float = field(compare=False)


class AdapterLinks:
    """The connect queue and link accounting of one adapter."""

    def __init__(
        self,
        adapter: str,
        slots: int,
        slot_manager: Any | None,
        clock: Callable[[], float],
        ttl_s: float,
    ) -> None:
        self.adapter = adapter
        self.slots = slots
        self.capacity = slots  # lowered when the controller refuses a connect for lack of room
        self.links: set[str] = set()
        self.connecting: str | None = None
        self.on_slot_wait: Callable[[], None] = lambda: None  # a connect started waiting
        self._slot_manager = slot_manager
        self._clock = clock
        self._ttl_s = ttl_s
        self._queue: dict[str, _Candidate] = {}
        self._arrivals = itertools.count()
        self._wake = asyncio.Event()
        self.waiting_for_slot = False
        self._releases = 0  # links ended so far: a refusal teaches only if none ended meanwhile

    @property
    def in_use(self) -> int:
        """Our links through this adapter, the connect in flight included."""
        return len(self.links) + (self.connecting is not None)

    @property
    def queued(self) -> int:
        """Candidates waiting to connect."""
        return len(self._queue)

    def free(self) -> int:
        """Slots free for us: our capacity less our links, less other processes' links."""
        free = self.capacity - self.in_use
        if self._slot_manager is not None:
            allocations = self._slot_manager.get_allocations(self.adapter)
            if allocations.slots:
                free = min(free, allocations.free)
        return max(0, free)

    def offer(self, device: BLEDevice, rssi: int | None, *, first: bool = False) -> None:
        """Queue (or refresh) a connect to ``device``; ``first`` jumps the queue (stale links)."""
        address = device.address.upper()
        strength = 1000 if first else (rssi if rssi is not None else -127)
        old = self._queue.get(address)
        arrival = old.rank[1] if old is not None else next(self._arrivals)
        self._queue[address] = _Candidate((-strength, arrival), address, device, self._clock())
        self._wake.set()

    def forget(self, address: str) -> None:
        """Drop a queued candidate (linked through another adapter, or backing off)."""
        self._queue.pop(address, None)

    def linked(self, address: str) -> None:
        """A link task now holds ``address`` through this adapter."""
        self.links.add(address)

    def released(self, address: str, device: BLEDevice | None = None) -> None:
        """A link through this adapter ended: its slot is free again."""
        self.links.discard(address)
        self._releases += 1
        if device is not None:
            self._release_slot(device)
        self.restore_capacity()

    def wake(self) -> None:
        """Look at the queue again (a slot may be free)."""
        self._wake.set()

    def restore_capacity(self) -> None:
        """Forget what the controller refused: a link (ours or another process's) ended, or
        the adapter was power-cycled; the next refusal teaches it again."""
        self.capacity = self.slots
        self.wake()

    async def run(self, connect: Callable[[BLEDevice], Awaitable[Outcome]], poll_s: float) -> None:
        """Connect queued candidates one at a time while slots are free, forever."""
        while True:
            candidate = self._next()
            if candidate is None or not self._take_slot(candidate.device):
                self._wake.clear()
                try:
                    async with asyncio.timeout(poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            self._queue.pop(candidate.address, None)
            self.connecting = candidate.address
            links, releases = len(self.links), self._releases
            try:
                outcome = await connect(candidate.device)
            finally:
                self.connecting = None
            if outcome is not Outcome.LINKED:
                self._release_slot(candidate.device)
            if outcome is Outcome.NO_SLOT:
                if releases == self._releases:  # nothing freed meanwhile: the refusal stands
                    self._learn_capacity(links)
                self.offer(candidate.device, -candidate.rank[0])  # waits for a slot, no backoff

    def _release_slot(self, device: BLEDevice) -> None:
        if self._slot_manager is None:
            return
        try:
            self._slot_manager.release_slot(device)
        except BleakError:
            # The device object is gone (adapter removed, cache cleared): BlueZ released it.
            self._slot_manager._release_slot(device.details["path"])

    def _next(self) -> _Candidate | None:
        oldest = self._clock() - self._ttl_s
        for address in [a for a, c in self._queue.items() if c.at < oldest]:
            del self._queue[address]
        return min(self._queue.values(), default=None)

    def _take_slot(self, device: BLEDevice) -> bool:
        room = self.free() > 0
        if room and self._slot_manager is not None:
            room = bool(self._slot_manager.allocate_slot(device))
        if not room and not self.waiting_for_slot:
            self.on_slot_wait()
        self.waiting_for_slot = not room
        return room

    def _learn_capacity(self, links: int) -> None:
        """The controller refused a link with ``links`` of ours up: that is its room for now."""
        if links and links < self.capacity:
            log.warning(
                "BLE %s: the controller refused a link with %d up; using %d slots, not %d",
                self.adapter,
                links,
                links,
                self.capacity,
            )
            self.capacity = links
