"""BLE acquisition: scan every adapter, link to paired patches within their slots, deliver readings.

One ``AdapterRunner`` per adapter BlueZ shows (followed by MAC as adapters come and go), each
with its scanner, watchdog and connect queue; links, intake, presence, the clock and delivery
are shared. Scanner trouble is recovered here and reported as gateway faults; only a scanner
that cannot be started after every retry ends the source (and so, through the gateway's
supervision, the process, for systemd to restart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from prometheus_client import CollectorRegistry

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation
from contract.health import BleHealth, ClockHealth
from contract.reading import Reading
from gateway.ble import health
from gateway.ble.adapters import AdapterRunner
from gateway.ble.allowlist import PairedPatch, allowlist
from gateway.ble.clock import ClockState, InjectedTime, SystemTime, TimeSource, clock_state
from gateway.ble.config import BleConfig
from gateway.ble.connector import Outcome
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.delivery import DeadLetterSink, Delivery
from gateway.ble.faults import Fault, Faults
from gateway.ble.fleet import AdapterFleet
from gateway.ble.held import HeldReadings, Stamp
from gateway.ble.intake import PatchIntake
from gateway.ble.links import BatteryLevel, PatchLinks
from gateway.ble.marks import ReplayMarks
from gateway.ble.presence import Presence
from gateway.source import ReadingSink

log = logging.getLogger(__name__)

__all__ = ["BatteryLevel", "BleAcquisition"]


class BleAcquisition:
    """A ``ReadingSource``: ``await BleAcquisition(paired).run(sink)`` until cancelled.

    Connectable patches get a link while their adapter has a slot; every paired patch is also
    heard through its BTHome adverts, so patches beyond the slot budget still report.
    """

    name = "ble"

    def __init__(
        self,
        paired: Iterable[PairedPatch],
        config: BleConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] | None = None,
        now_us: Callable[[], int] | None = None,
        time_source: TimeSource | None = None,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or BleConfig()
        self.patches = allowlist(paired)
        self.counters = BleCounters(registry or CollectorRegistry())
        self.time, self._clock = _clocks(clock, now_us, time_source, self.config.clock_ntp)
        c = self.config
        # Silences that start within a few adverts of each other (a scan cycle when duty
        # cycling) started together.
        together = max(5.0, 3 * c.measure_every_s, c.scan_every_s if c.scan_window_s else 0.0)
        self.presence = Presence(c.gone_after_s, together)
        self.faults = Faults()
        self._on_gone = on_gone
        self._intake = PatchIntake(
            self.patches, self.counters, self.presence, clock=self._clock, now_us=self.time.wall_us
        )
        self.marks: ReplayMarks | None = None
        if self.config.replay_marks_path is not None:
            self.marks = ReplayMarks(self.config.replay_marks_path)
            self._intake.resume(self.marks.load())
        held = HeldReadings(self.config.held_path, self.config.held_max_readings)
        address_of = {p.device_id: p.address for p in self.patches.values()}
        self.delivery = Delivery(self.config, self.counters, self.marks, held, address_of)
        self.links = PatchLinks(
            self.config, self.counters, self._intake, self._clock, self._queue, self._heard
        )
        self.fleet = AdapterFleet(
            self, self.links, self.faults, self._clock, self._intake.knows, self._runner_gone
        )
        self.clock_state = clock_state(self.time)
        self.adverts_mark = (time.monotonic(), 0.0)  # for the advert rate in health()

    # -- state ------------------------------------------------------------------------------

    @property
    def gone(self) -> frozenset[str]:
        """Addresses of paired patches currently declared silent."""
        return frozenset(self.presence.gone)

    @property
    def connected(self) -> frozenset[str]:
        """Addresses with a link task running (connected, or being set up)."""
        return frozenset(self.links.held)

    @property
    def runners(self) -> dict[str, AdapterRunner]:
        """The adapters in use, by MAC."""
        return self.fleet.runners

    def device_info_due(self) -> list[tuple[str, DeviceInformation]]:
        """(device id, Device Information) read or changed since last published."""
        unpublished = self.links.info_unpublished
        return [(self.patches[a].device_id, i) for a, i in unpublished.items() if a in self.patches]

    def device_info_published(self, device_id: str, info: DeviceInformation) -> None:
        """Forget a report once the broker took it (unless it changed meanwhile)."""
        for address, pending in list(self.links.info_unpublished.items()):
            patch = self.patches.get(address)
            if patch is not None and patch.device_id == device_id and pending == info:
                del self.links.info_unpublished[address]

    @property
    def device_info(self) -> dict[str, DeviceInformation]:
        """Device Information read from each patch (for the installed-base archive)."""
        return self.links.device_info

    @property
    def battery(self) -> dict[str, BatteryLevel]:
        """The last Battery Level read from each patch."""
        return self.links.battery

    @property
    def peak_links(self) -> int:
        """The most links held at once."""
        return self.links.peak_links

    @property
    def pending(self) -> int:
        """Readings decoded but not yet taken by the sink."""
        return self.delivery.pending

    @property
    def scanning(self) -> bool:
        """Whether some adapter's scanner is running."""
        return any(r.scan.scanning for r in self.runners.values())

    def use_dead_letters(self, sink: DeadLetterSink) -> None:
        """Where readings that cannot be forwarded go (the gateway's dead letters)."""
        self.delivery.dead_letter = sink

    def health(self) -> BleHealth:
        """A summary for the gateway's health message."""
        return health.summary(self)

    def clock_health(self) -> ClockHealth:
        """Whether readings are stamped with the wall clock now, or held."""
        state = self.clock_state
        return ClockHealth(state=state.value, trusted=state.trusted, wall_us=self.time.wall_us())

    # -- running ------------------------------------------------------------------------------

    async def run(self, sink: ReadingSink) -> None:
        """Scan, link and deliver into ``sink`` until cancelled; on cancel, hand over the rest."""
        self.presence.track(self.patches, self._clock())  # a patch never heard goes gone on time
        install = getattr(self.config.scanner_backend, "install_in_loop", None)
        if callable(install):
            install()  # a custom backend (the simulator's virtual BlueZ) joins this loop
        try:
            async with asyncio.TaskGroup() as tasks:
                self.links.tasks = tasks
                tasks.create_task(self.delivery.run(sink))
                tasks.create_task(self._sweep(sink))
                try:
                    await self.fleet.follow(tasks)
                finally:
                    self.links.tasks = None
        except ExceptionGroup as group:
            # Link failures are handled inside; what escapes is the sink's or the scanner's
            # (or bluetoothd restarted). Queued readings still go to the sink if it takes them.
            await self.delivery.flush(sink)
            raise _leaf(group) from None
        except asyncio.CancelledError:
            # Patches do not resend what they notified or advertised, so readings decoded but
            # still queued exist nowhere else: give them to the sink before going.
            await self.delivery.flush(sink)
            raise
        finally:
            if self.marks is not None:
                self.marks.close()
            self.delivery.held.close()

    # -- adverts and links ----------------------------------------------------------------------

    def on_advert(self, runner: AdapterRunner, device: BLEDevice, adv: AdvertisementData) -> None:
        """An advert: decode what paired patches send, queue a link for connectable ones."""
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
        if readings:
            self._heard(address)
        # Never spend a slot on a device whose advert was just refused (a spoofer, a replay).
        if readings is not None and (connectable or self.config.scanning_mode == "passive"):
            self._offer(runner, device, adv.rssi)

    def _offer(self, runner: AdapterRunner, device: BLEDevice, rssi: int | None) -> None:
        address = device.address.upper()
        if address in self.links.held or self.links.backing_off(address):
            return
        runner.links.offer(device, rssi)

    async def connect(self, runner: AdapterRunner, device: BLEDevice) -> Outcome:
        """One link attempt through ``runner``'s adapter (its connect worker awaits this)."""
        return await self.links.connect(runner, device)

    # -- AdapterOwner ------------------------------------------------------------------------

    def expects_adverts(self) -> bool:
        """Some paired patch is unlinked, so adverts should be heard."""
        return len(self.links.held) < len(self.patches)

    def scanner_failing(self, runner: AdapterRunner, failures: int, why: str) -> None:
        """Raise SCANNER_FAILING on the first failed start cycle, clear it on a start."""
        if failures:
            self.faults.raise_(Fault.SCANNER_FAILING, why, adapter=runner.key, failures=failures)
            if failures >= self.config.scanner_max_failures:
                log.error("BLE %s: giving up after %d failed starts", runner.label, failures)
        else:
            self.faults.clear(Fault.SCANNER_FAILING, f"{runner.label} scans again")

    def scanner_silent(self, runner: AdapterRunner, silent: bool, why: str) -> None:
        """One gateway fault for a deaf scanner; nobody is declared gone meanwhile."""
        if silent:
            self.faults.raise_(Fault.SCANNER_SILENT, f"{runner.label}: {why}", adapter=runner.key)
            self.presence.suspend()
        else:
            self._resume_presence()

    def _runner_gone(self, runner: AdapterRunner) -> None:
        self.faults.clear(Fault.SCANNER_SILENT, f"{runner.label} is gone")
        self._resume_presence()

    def _resume_presence(self) -> None:
        deaf = any(r.watchdog.faulted for r in self.runners.values())
        if not deaf and self.faults.clear(Fault.SCANNER_SILENT, "adverts are heard again"):
            self.presence.resume(self._clock())

    # -- readings, silence and the clock ----------------------------------------------------------

    def _heard(self, address: str) -> None:
        if Fault.ALL_PATCHES_SILENT in self.faults.active:
            self.faults.clear(Fault.ALL_PATCHES_SILENT, f"{address} is heard again")

    def _queue(self, readings: list[Reading] | None) -> None:
        if not readings:
            return
        stamp = None
        if not self.clock_state.trusted:
            stamp = Stamp(self.time.boot_id(), self.time.monotonic_us())
        self.delivery.put(readings, stamp)

    async def _sweep(self, sink: ReadingSink) -> None:
        while True:
            await asyncio.sleep(self.config.wall_sweep_s)
            self._sweep_presence()
            await self._check_clock(sink)

    def _sweep_presence(self) -> None:
        swept = self.presence.sweep(self._clock())
        if swept.all_silent:
            self.faults.raise_(
                Fault.ALL_PATCHES_SILENT,
                f"all {len(swept.all_silent)} paired patches went silent at once: "
                "the gateway, not the patients, is the likely cause",
                patches=len(swept.all_silent),
            )
        for address in swept.gone:
            self.counters.gone.inc()
            log.warning(
                "BLE patch %s (%s) silent for over %.0f s: gone",
                address,
                self.patches[address].device_id,
                self.config.gone_after_s,
            )
            if self._on_gone is not None:
                self._on_gone(address)

    async def _check_clock(self, sink: ReadingSink) -> None:
        self.clock_state = clock_state(self.time)
        self.counters.clock_trusted.set(int(self.clock_state.trusted))
        if self.clock_state is ClockState.UNTRUSTED:
            self.faults.raise_(
                Fault.CLOCK_UNTRUSTED,
                "the clock is not NTP-synchronised: readings are held until it is",
            )
            return
        self.faults.clear(Fault.CLOCK_UNTRUSTED, f"clock trusted ({self.clock_state.value})")
        if self.delivery.held.count:
            await self.delivery.release_held(sink, self.time)


def _clocks(
    clock: Callable[[], float] | None,
    now_us: Callable[[], int] | None,
    source: TimeSource | None,
    ntp: bool = True,
) -> tuple[TimeSource, Callable[[], float]]:
    """The time source and the acquisition clock (seconds) from what the caller gave."""
    if source is not None:
        return source, clock or (lambda: source.monotonic_us() / 1e6)
    if clock is None and now_us is None:
        return SystemTime(ntp=ntp), time.monotonic
    injected = InjectedTime(clock or time.monotonic, now_us or (lambda: time.time_ns() // 1000))
    return injected, clock or time.monotonic


def _leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    """The one exception inside nested single-exception groups (else the group itself)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
