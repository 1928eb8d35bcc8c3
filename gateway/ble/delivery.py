"""From decoded readings to the sink: queued, batched, held while the clock cannot stamp them.

Patches do not resend what they notified or advertised, so what is decoded must reach the sink
(the outbox) or the held store (waiting for a trusted clock), be counted as lost, or be
dead-lettered with a reason — never vanish. Replay marks are raised after either durable write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from contract.reading import Reading
from gateway.ble.clock import TimeSource
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters
from gateway.ble.held import HeldReadings, Stamp
from gateway.ble.marks import ReplayMarks
from gateway.source import ReadingSink

log = logging.getLogger(__name__)

# Where readings the gateway cannot forward go, with the reason (the gateway's dead letters).
DeadLetterSink = Callable[[Sequence[Reading], str], Awaitable[None]]


@dataclass(slots=True)
class Parcel:
    """Readings of one frame or advert; ``stamp`` set when they must wait for the clock."""

    readings: list[Reading]
    stamp: Stamp | None


class Delivery:
    """The queue between intake and sink, and the held store behind it."""

    def __init__(
        self,
        config: BleConfig,
        counters: BleCounters,
        marks: ReplayMarks | None,
        held: HeldReadings,
        address_of: Mapping[str, str],
    ) -> None:
        self._config = config
        self._counters = counters
        self._marks = marks
        self.held = held
        self._address_of = address_of
        self._queue: asyncio.Queue[Parcel] = asyncio.Queue()
        self.queued = 0
        self.in_flight = 0
        self._handover: asyncio.Future[None] | None = None
        self.dead_letter: DeadLetterSink | None = None

    @property
    def pending(self) -> int:
        """Readings decoded but not yet taken by the sink or the held store."""
        return self.queued + self.in_flight

    def put(self, readings: list[Reading], stamp: Stamp | None) -> None:
        """Queue readings; past the bound they are dropped and counted (the sink fell behind)."""
        if not readings:
            return
        if self.queued + len(readings) > self._config.outbox_readings:
            self._counters.outbox_overflow.inc(len(readings))
            return
        self.queued += len(readings)
        self._queue.put_nowait(Parcel(readings, stamp))

    async def run(self, sink: ReadingSink) -> None:
        """Hand batches over until cancelled."""
        while True:
            batch = self._next_batch(await self._queue.get())
            self._handover = asyncio.ensure_future(self._hand_over(sink, batch))
            # Shielded: a cancel must not abandon a batch half-way into the sink; flush waits.
            await asyncio.shield(self._handover)

    def _next_batch(self, first: Parcel) -> list[Parcel]:
        batch = [first]
        size = len(first.readings)
        while size < self._config.batch_readings and not self._queue.empty():
            parcel = self._queue.get_nowait()
            batch.append(parcel)
            size += len(parcel.readings)
        self.queued -= size
        self.in_flight = size
        return batch

    async def _hand_over(self, sink: ReadingSink, batch: list[Parcel]) -> None:
        now = [r for p in batch if p.stamp is None for r in p.readings]
        for parcel in batch:
            if parcel.stamp is not None:
                refused = await asyncio.to_thread(self.held.hold, parcel.readings, parcel.stamp)
                if refused:
                    await self._dead(
                        refused, "held for a trusted clock, but the held store is full"
                    )
        if now:
            await sink(now)
        self.in_flight = 0
        self._counters.readings.inc(len(now))
        self._counters.held.set(self.held.count)
        if self._marks is not None:
            # After the durable write: a mark never claims readings that are nowhere.
            marks: dict[str, int] = {}
            for r in (r for p in batch for r in p.readings):
                address = self._address_of[r.device_id]
                marks[address] = max(marks.get(address, 0), r.seq)
            await asyncio.to_thread(self._marks.raise_to, marks)

    async def flush(self, sink: ReadingSink) -> None:
        """Finish the hand-over under way and deliver what is queued, within the flush timeout."""
        try:
            async with asyncio.timeout(self._config.flush_timeout_s):
                if self._handover is not None and not self._handover.done():
                    await self._handover
                while not self._queue.empty():
                    await self._hand_over(sink, self._next_batch(self._queue.get_nowait()))
        except Exception as exc:  # the gateway is stopping anyway: count and say what is lost
            lost = self.pending
            self._counters.unflushed.inc(lost)
            log.error("BLE acquisition stopped with %d readings not delivered (%r)", lost, exc)

    async def release_held(self, sink: ReadingSink, time: TimeSource) -> int:
        """The clock is trusted: re-stamp held readings and hand them over; how many."""
        released_total = 0
        while self.held.count:
            now = Stamp(time.boot_id(), time.monotonic_us())
            released = await asyncio.to_thread(
                self.held.release, self._config.batch_readings, now, time.wall_us()
            )
            if released.unplaceable:
                await self._dead(
                    released.unplaceable,
                    "received before a reboot while the clock was not trusted: its time is unknown",
                )
            if released.restamped:
                await sink(released.restamped)
                self._counters.restamped.inc(len(released.restamped))
                self._counters.readings.inc(len(released.restamped))
            await asyncio.to_thread(self.held.delete, released.ids)
            released_total += len(released.restamped)
            self._counters.held.set(self.held.count)
        if released_total:
            log.warning("BLE: %d held readings re-stamped with the trusted clock", released_total)
        return released_total

    async def _dead(self, readings: list[Reading], reason: str) -> None:
        self._counters.time_unknown.inc(len(readings))
        if self.dead_letter is not None:
            await self.dead_letter(readings, reason)
            return
        log.error(
            "BLE: %d readings cannot be stamped and have no dead letters: %s", len(readings), reason
        )
