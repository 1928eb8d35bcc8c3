"""BLE acquisition: scan, link to paired patches within the slot budget, deliver readings."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from prometheus_client import CollectorRegistry

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation
from contract.reading import Reading
from gateway.ble.allowlist import PairedPatch, allowlist
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.intake import PatchIntake
from gateway.ble.link import hold_link
from gateway.ble.marks import ReplayMarks
from gateway.ble.presence import Presence
from gateway.ble.slots import ConnectionSlots
from gateway.source import ReadingSink

log = logging.getLogger(__name__)


def _wall_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """A Battery Level read over GATT, and when (acquisition clock)."""

    percent: int
    at: float


class BleAcquisition:
    """A ``ReadingSource``: ``await BleAcquisition(paired).run(sink)`` until cancelled.

    Connectable patches get a link while a slot is free; every paired patch is also heard
    through its BTHome adverts, so patches beyond the slot budget still report.
    """

    name = "ble"

    def __init__(
        self,
        paired: Iterable[PairedPatch],
        config: BleConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        now_us: Callable[[], int] = _wall_us,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or BleConfig()
        self.patches = allowlist(paired)
        self.counters = BleCounters(registry or CollectorRegistry())
        self.presence = Presence(self.config.gone_after_s)
        self.slots = ConnectionSlots(self.config.max_connections)
        self.device_info: dict[str, DeviceInformation] = {}  # for the installed-base archive
        self.battery: dict[str, BatteryLevel] = {}
        self._clock = clock
        self._on_gone = on_gone
        self._intake = PatchIntake(
            self.patches, self.counters, self.presence, clock=clock, now_us=now_us
        )
        self._outbox: asyncio.Queue[list[Reading]] = asyncio.Queue()
        self._queued = 0
        self._links: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._bad_frames: dict[str, int] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._handover: asyncio.Future[None] | None = None
        self._in_flight = 0
        self._address_of = {p.device_id: p.address for p in self.patches.values()}
        self.scanning = False
        self.marks: ReplayMarks | None = None
        if self.config.replay_marks_path is not None:
            self.marks = ReplayMarks(self.config.replay_marks_path)
            self._intake.resume(self.marks.load())

    @property
    def gone(self) -> frozenset[str]:
        """Addresses of paired patches currently declared silent."""
        return frozenset(self.presence.gone)

    @property
    def connected(self) -> frozenset[str]:
        """Addresses with a link task running (connecting or connected)."""
        return frozenset(self._links)

    @property
    def pending(self) -> int:
        """Readings decoded but not yet taken by the sink."""
        return self._queued + self._in_flight

    async def run(self, sink: ReadingSink) -> None:
        """Scan, link and deliver into ``sink`` until cancelled; on cancel, hand over the rest."""
        scanner = BleakScanner(self._on_advert, backend=self.config.scanner_backend)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._deliver(sink))
                tasks.create_task(self._watch_silence())
                try:
                    await self._scan(scanner)
                finally:
                    self._tasks = None
                    self.scanning = False
        except ExceptionGroup as group:
            # Link failures are handled inside; what escapes is the sink's, so raise it as is.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        except asyncio.CancelledError:
            # Patches do not resend what they notified or advertised, so readings decoded but
            # still queued exist nowhere else: give them to the sink before going.
            await self._flush(sink)
            raise
        finally:
            if self.marks is not None:
                self.marks.close()

    async def _scan(self, scanner: BleakScanner) -> None:
        window = self.config.scan_window_s
        if window is None or window >= self.config.scan_every_s:
            async with scanner:
                self.scanning = True
                await asyncio.Event().wait()  # the scanner works through callbacks
            return
        try:
            while True:
                # Polled on the acquisition clock, so simulated time drives the cycle in tests.
                due = self._clock() % self.config.scan_every_s < window
                if due and not self.scanning:
                    await scanner.start()
                    self.scanning = True
                elif not due and self.scanning:
                    await scanner.stop()
                    self.scanning = False
                await asyncio.sleep(self.config.wall_poll_s)
        finally:
            if self.scanning:
                await scanner.stop()

    # -- adverts ---------------------------------------------------------------------------------

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        bthome = adv.service_data.get(uuids.BTHOME_SERVICE_DATA)
        connectable = uuids.PATCH_SERVICE in adv.service_uuids
        if not self._intake.knows(address):
            if bthome is not None or connectable:  # only things that look like our patches
                self.counters.reject(address, RejectReason.UNKNOWN_DEVICE, "not paired")
            return
        readings: list[Reading] | None = []
        if bthome is not None:
            readings = self._intake.advert(address, bthome)
            self._queue(readings)
        # Never spend a slot on a device whose advert was just refused (a spoofer, a replay).
        if connectable and readings is not None:
            self._maybe_link(device)

    def _maybe_link(self, device: BLEDevice) -> None:
        address = device.address.upper()
        if address in self._links or self._tasks is None:
            return
        if self._clock() < self._retry_at.get(address, 0.0) or not self.slots.try_acquire():
            return
        self._links[address] = self._tasks.create_task(self._link(device))

    async def _link(self, device: BLEDevice) -> None:
        address = device.address.upper()
        failed: Exception | None = None
        try:
            await hold_link(device, self, self.config)
        except Exception as exc:  # one patch's failure must not stop the gateway
            failed = exc
        finally:
            self._links.pop(address, None)
            self.slots.release()
            self.counters.connected.set(self.slots.in_use)
        if failed is None and self._bad_frames.get(address, 0) < self.config.max_bad_frames:
            self.counters.drops.inc()
            self._retry_at[address] = self._clock() + self.config.reconnect_after_s
            log.info("BLE link to %s ended", address)
            return
        # Failed to connect, or hung up on bad frames: back off exponentially.
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        self.counters.link_failures.inc()
        delay = min(self.config.backoff_max_s, self.config.reconnect_after_s * 2**failures)
        self._retry_at[address] = self._clock() + delay
        log.warning(
            "BLE link to %s failed (%s); retry in %.0f s",
            address,
            failed or "too many refused frames",
            delay,
        )

    # -- LinkOwner -------------------------------------------------------------------------------

    def on_connected(self, address: str) -> None:
        """Count the link; its backoff resets once an authentic frame arrives."""
        self._bad_frames.pop(address, None)
        self.counters.connects.inc()
        self.counters.connected.set(self.slots.in_use)
        log.info("BLE link to %s up (%d/%d slots)", address, self.slots.in_use, self.slots.size)

    def on_frame(self, address: str, data: bytes) -> bool:
        """Decode a notification; hang up after too many refused frames in a row."""
        readings = self._intake.notification(address, data)
        if readings is not None:
            self._bad_frames.pop(address, None)
            self._failures.pop(address, None)  # authentic data: this patch is fine
            self._queue(readings)
            return True
        bad = self._bad_frames.get(address, 0) + 1
        self._bad_frames[address] = bad
        return bad < self.config.max_bad_frames

    def wants_info(self, address: str) -> bool:
        """Device Information is read once per patch."""
        return address not in self.device_info

    def on_info(self, address: str, info: DeviceInformation) -> None:
        """Keep Device Information for the installed-base archive."""
        self.device_info[address] = info
        log.info(
            "BLE %s is %s serial %s firmware %s",
            address,
            info.model_number,
            info.serial_number,
            info.firmware_revision,
        )

    def battery_due(self, address: str) -> bool:
        """Battery Level is read on first connect, then every ``battery_every_s``."""
        last = self.battery.get(address)
        return last is None or self._clock() - last.at >= self.config.battery_every_s

    def on_battery(self, address: str, percent: int) -> None:
        """Keep the polled Battery Level (frames carry it too; this covers idle links)."""
        self.battery[address] = BatteryLevel(percent, self._clock())

    # -- delivery and silence ----------------------------------------------------------------------

    def _queue(self, readings: list[Reading] | None) -> None:
        if not readings:
            return
        if self._queued + len(readings) > self.config.outbox_readings:
            self.counters.outbox_overflow.inc(len(readings))
            return
        self._queued += len(readings)
        self._outbox.put_nowait(readings)

    async def _deliver(self, sink: ReadingSink) -> None:
        while True:
            batch = self._next_batch(await self._outbox.get())
            self._handover = asyncio.ensure_future(self._hand_over(sink, batch))
            # Shielded: a cancel must not abandon a batch half-way into the sink; _flush waits.
            await asyncio.shield(self._handover)

    def _next_batch(self, first: list[Reading]) -> list[Reading]:
        batch = first
        while len(batch) < self.config.batch_readings and not self._outbox.empty():
            batch.extend(self._outbox.get_nowait())
        self._queued -= len(batch)
        self._in_flight = len(batch)
        return batch

    async def _hand_over(self, sink: ReadingSink, batch: Sequence[Reading]) -> None:
        await sink(batch)
        self._in_flight = 0
        self.counters.readings.inc(len(batch))
        if self.marks is not None:
            # After the sink: a mark never claims readings that are not in the outbox.
            marks: dict[str, int] = {}
            for r in batch:
                address = self._address_of[r.device_id]
                marks[address] = max(marks.get(address, 0), r.seq)
            await asyncio.to_thread(self.marks.raise_to, marks)

    async def _flush(self, sink: ReadingSink) -> None:
        """Finish the hand-over under way and deliver what is queued, within the flush timeout."""
        try:
            async with asyncio.timeout(self.config.flush_timeout_s):
                if self._handover is not None and not self._handover.done():
                    await self._handover
                while not self._outbox.empty():
                    await self._hand_over(sink, self._next_batch(self._outbox.get_nowait()))
        except Exception as exc:  # the gateway is stopping anyway: count and say what is lost
            lost = self.pending
            self.counters.unflushed.inc(lost)
            log.error("BLE acquisition stopped with %d readings not delivered (%r)", lost, exc)

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(self.config.wall_sweep_s)
            for address in self.presence.sweep(self._clock()):
                self.counters.gone.inc()
                log.warning(
                    "BLE patch %s (%s) silent for over %.0f s: gone",
                    address,
                    self.patches[address].device_id,
                    self.config.gone_after_s,
                )
                if self._on_gone is not None:
                    self._on_gone(address)
