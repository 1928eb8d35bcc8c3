"""BLE acquisition: scan every adapter, link to paired patches within their slots, deliver readings.

One ``AdapterRunner`` per adapter BlueZ shows (followed by MAC as adapters come and go), each
with its scanner, watchdog and connect queue; links, intake, presence, the clock and delivery
are shared. Scanner trouble is recovered here and reported as gateway faults; only a scanner
that cannot be started after every retry ends the source (and so, through the gateway's
supervision, the process, for systemd to restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_retry_connector import BleakSlotManager, clear_cache, close_stale_connections
from prometheus_client import CollectorRegistry

from contract.ble import uuids
from contract.ble.gatt import DeviceInformation
from contract.health import BleHealth, ClockHealth
from contract.reading import Reading
from gateway.ble import health
from gateway.ble.adapters import AdapterRunner
from gateway.ble.allowlist import PairedPatch, allowlist
from gateway.ble.bluez import DEFAULT_ADAPTER, AdapterInfo, BlueZ, BlueZRestarted, open_bluez
from gateway.ble.clock import ClockState, InjectedTime, SystemTime, TimeSource, clock_state
from gateway.ble.config import BleConfig
from gateway.ble.connector import Outcome
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.delivery import DeadLetterSink, Delivery
from gateway.ble.faults import Fault, Faults
from gateway.ble.held import HeldReadings, Stamp
from gateway.ble.intake import PatchIntake
from gateway.ble.link import Ended, StaleGattCache, hold_link, open_link
from gateway.ble.marks import ReplayMarks
from gateway.ble.presence import Presence
from gateway.source import ReadingSink

log = logging.getLogger(__name__)

IN_PROGRESS = "InProgress"
# How BlueZ words a connect the controller refused for lack of room (HCI "Limited Resources").
_OUT_OF_SLOTS = ("le-connection-abort-by-local", "connection slot", "available connection")


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """A Battery Level read over GATT, and when (acquisition clock)."""

    percent: int
    at: float


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
        self.time, self._clock = _clocks(clock, now_us, time_source)
        c = self.config
        # Silences that start within a few adverts of each other (a scan cycle when duty
        # cycling) started together.
        together = max(5.0, 3 * c.measure_every_s, c.scan_every_s if c.scan_window_s else 0.0)
        self.presence = Presence(c.gone_after_s, together)
        self.faults = Faults()
        self.device_info: dict[str, DeviceInformation] = {}  # for the installed-base archive
        self.battery: dict[str, BatteryLevel] = {}
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
        self.runners: dict[str, AdapterRunner] = {}
        self._runner_tasks: dict[str, asyncio.Task[None]] = {}
        self._links: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._bad_frames: dict[str, int] = {}
        self._frame_at: dict[str, float] = {}
        self._unstuck: set[str] = set()  # InProgress cleaned up once (reset on a link)
        self._cache_cleared: set[str] = set()  # GATT cache cleared once (reset on a link)
        self._adopting: set[str] = set()  # links BlueZ held at start-up, offered for adoption
        self._tasks: asyncio.TaskGroup | None = None
        self._bluez: BlueZ | None = None
        self._bluez_restarted = False
        self._slot_manager: BleakSlotManager | None = None
        self.clock_state = clock_state(self.time)
        self.peak_links = 0
        self.adverts_mark = (time.monotonic(), 0.0)  # for the advert rate in health()

    # -- state ------------------------------------------------------------------------------

    @property
    def gone(self) -> frozenset[str]:
        """Addresses of paired patches currently declared silent."""
        return frozenset(self.presence.gone)

    @property
    def connected(self) -> frozenset[str]:
        """Addresses with a link task running (connected, or being set up)."""
        return frozenset(self._links)

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
                self._tasks = tasks
                tasks.create_task(self.delivery.run(sink))
                tasks.create_task(self._sweep(sink))
                try:
                    await self._follow_adapters(tasks)
                finally:
                    self._tasks = None
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

    async def _follow_adapters(self, tasks: asyncio.TaskGroup) -> None:
        """Keep one runner per adapter BlueZ shows (by MAC), forever."""
        missing_since: float | None = None
        while True:
            if self._bluez_restarted:
                raise BlueZRestarted(
                    "bluetoothd restarted (org.bluez changed owner): bleak's view of BlueZ is "
                    "stale; the BLE source ends so that the gateway restarts with a fresh one"
                )
            if self._bluez is None:
                self._bluez = await open_bluez()
                if self._bluez is not None:
                    await self._setup_slots()
                    await self._bluez.watch_restarts(self._on_bluez_restart)
            wanted: dict[str, AdapterInfo | None] = {DEFAULT_ADAPTER: None}
            if self._bluez is not None:
                wanted = dict(self._bluez.adapters())
            for key, runner in list(self.runners.items()):
                if key not in wanted or _renamed(runner, wanted[key]):
                    await self._stop_runner(key)
            for key, info in wanted.items():
                if key not in self.runners:
                    runner = AdapterRunner(self, info, self._bluez, self._slot_manager, self._clock)
                    self._start_runner(tasks, runner)
            missing_since = self._adapters_present(bool(wanted), missing_since)
            self.counters.adapters.set(len(self.runners))
            await asyncio.sleep(self.config.adapter_poll_s)

    def _on_bluez_restart(self) -> None:
        self._bluez_restarted = True
        log.error("BLE: bluetoothd restarted")

    def _adapters_present(self, present: bool, since: float | None) -> float | None:
        """Raise ADAPTER_MISSING while BlueZ shows none; give up after a long absence."""
        if present:
            self.faults.clear(Fault.ADAPTER_MISSING, "an adapter is back")
            return None
        now = time.monotonic()
        self.faults.raise_(
            Fault.ADAPTER_MISSING,
            "BlueZ shows no Bluetooth adapter: check the dongle, `rfkill list`, `hciconfig -a`",
        )
        limit = self.config.scanner_retry_max_s * self.config.scanner_max_failures
        if since is not None and now - since > limit:
            raise RuntimeError(f"no Bluetooth adapter for {limit:g} s: giving up")
        return now if since is None else since

    async def _setup_slots(self) -> None:
        """bleak-retry-connector's slot manager on the BlueZ just found."""
        manager = BleakSlotManager()
        await manager.async_setup()
        manager.register_allocation_callback(lambda _event: self._wake_all())
        self._slot_manager = manager

    def _start_runner(self, tasks: asyncio.TaskGroup, runner: AdapterRunner) -> None:
        if self._slot_manager is not None and runner.name is not None:
            self._slot_manager.register_adapter(runner.name, self.config.max_connections)
        self.runners[runner.key] = runner
        self._runner_tasks[runner.key] = tasks.create_task(runner.run())
        log.info("BLE %s: scanning and linking", runner.label)
        self._adopt_links(runner)

    async def _stop_runner(self, key: str) -> None:
        runner = self.runners.pop(key)
        task = self._runner_tasks.pop(key)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._slot_manager is not None and runner.name is not None:
            with contextlib.suppress(KeyError):
                self._slot_manager.remove_adapter(runner.name)
        self.faults.clear(Fault.SCANNER_SILENT, f"{runner.label} is gone")
        self._resume_presence()
        log.warning("BLE %s: adapter gone", runner.label)

    def _adopt_links(self, runner: AdapterRunner) -> None:
        """Links BlueZ already holds to paired patches (a crashed run's): take them over first."""
        if self._bluez is None or runner.name is None:
            return
        for device in self._bluez.connected(runner.name):
            address = device.address.upper()
            if self._intake.knows(address) and address not in self._links:
                log.warning(
                    "BLE %s: BlueZ still holds a link to %s; adopting it", runner.label, address
                )
                self._adopting.add(address)
                runner.links.offer(device, None, first=True)

    def _wake_all(self) -> None:
        """A link BlueZ counted came or went (another process's too): look at the queues."""
        for runner in self.runners.values():
            runner.links.restore_capacity()

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
        if address in self._links or self._clock() < self._retry_at.get(address, 0.0):
            return
        runner.links.offer(device, rssi)

    async def connect(self, runner: AdapterRunner, device: BLEDevice) -> Outcome:
        """One link attempt through ``runner``'s adapter (its connect worker awaits this)."""
        address = device.address.upper()
        if address in self._links or self._tasks is None:
            return Outcome.SKIPPED
        if self._clock() < self._retry_at.get(address, 0.0):
            return Outcome.SKIPPED
        path = device.details.get("path") if isinstance(device.details, dict) else None
        if self._bluez is not None and path and not self._bluez.has_device(path):
            return Outcome.SKIPPED  # BlueZ removed it; its next advert brings it back
        lost = asyncio.Event()
        try:
            client = await open_link(device, self.config, lost.set)
        except Exception as exc:  # one patch's failure must not stop the gateway
            return await self._connect_failed(runner, device, exc)
        if address in self._adopting:
            self._adopting.discard(address)
            self.counters.stale_links.labels("adopted").inc()
        runner.links.linked(address)
        self.peak_links = max(self.peak_links, len(self._links) + 1)
        self._links[address] = self._tasks.create_task(self._hold(runner, device, client, lost))
        return Outcome.LINKED

    async def _connect_failed(
        self, runner: AdapterRunner, device: BLEDevice, exc: Exception
    ) -> Outcome:
        address = device.address.upper()
        text = str(exc)
        if IN_PROGRESS in text and address not in self._unstuck:
            # A connect BlueZ thinks is still under way (another process's, or a wedged one):
            # close any stale link, clear the device's cache once; its next advert retries.
            self._unstuck.add(address)
            self.counters.cache_clears.inc()
            log.warning(
                "BLE %s: connect to %s refused InProgress; cleaning up", runner.label, address
            )
            with contextlib.suppress(Exception):
                await close_stale_connections(device)
                await clear_cache(address)
            return Outcome.SKIPPED
        if address in self._adopting:
            self._adopting.discard(address)  # adoption failed: close it, link afresh on advert
            self.counters.stale_links.labels("closed").inc()
            with contextlib.suppress(Exception):
                await close_stale_connections(device)
        if any(s in text for s in _OUT_OF_SLOTS) and runner.links.links:
            log.info(
                "BLE %s: no slot for %s (%d links up)",
                runner.label,
                address,
                len(runner.links.links),
            )
            return Outcome.NO_SLOT
        self._backoff(address, exc)
        return Outcome.FAILED

    async def _hold(
        self, runner: AdapterRunner, device: BLEDevice, client: BleakClient, lost: asyncio.Event
    ) -> None:
        address = device.address.upper()
        ended: Ended | None = None
        failed: Exception | None = None
        try:
            ended = await hold_link(client, self, self.config, lost)
        except StaleGattCache as exc:
            failed = await self._stale_cache(address, exc)
        except Exception as exc:  # one patch's failure must not stop the gateway
            failed = exc
        finally:
            self._links.pop(address, None)
            self._frame_at.pop(address, None)
            runner.links.released(address, device)
            self.counters.connected.set(len(self._links))
        if failed is not None:
            self._backoff(address, failed)
        elif ended is Ended.BAD_FRAMES:
            self._backoff(address, RuntimeError("too many refused frames"))
        else:
            if ended is Ended.SILENT:
                self.counters.silent_hangups.inc()
                log.warning(
                    "BLE %s: no authentic frame for %.0f s; hung up",
                    address,
                    self.config.link_silence_s,
                )
            self.counters.drops.inc()
            self._retry_at[address] = self._clock() + self.config.reconnect_after_s
            log.info("BLE link to %s ended (%s)", address, (ended or Ended.DROPPED).value)

    async def _stale_cache(self, address: str, exc: StaleGattCache) -> Exception | None:
        """The patch measurement characteristic was missing: clear BlueZ's cache, once."""
        if address in self._cache_cleared:
            return exc
        self._cache_cleared.add(address)
        self.counters.cache_clears.inc()
        log.warning("BLE %s: %s; clearing the BlueZ cache of the device", address, exc)
        with contextlib.suppress(Exception):
            await clear_cache(address)
        return None

    def _backoff(self, address: str, why: Exception) -> None:
        """A failed connect or a link we hung up on: back off exponentially."""
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        self.counters.link_failures.inc()
        delay = min(self.config.backoff_max_s, self.config.reconnect_after_s * 2**failures)
        self._retry_at[address] = self._clock() + delay
        log.warning("BLE link to %s failed (%s); retry in %.0f s", address, why, delay)

    # -- LinkOwner ---------------------------------------------------------------------------

    def on_connected(self, address: str) -> None:
        """Count the link; its backoff resets once an authentic frame arrives."""
        self._bad_frames.pop(address, None)
        self._frame_at[address] = self._clock()
        self.counters.connects.inc()
        self.counters.connected.set(len(self._links))
        log.info("BLE link to %s up (%d links)", address, len(self._links))

    def on_frame(self, address: str, data: bytes) -> bool:
        """Decode a notification; hang up after too many refused frames in a row."""
        readings = self._intake.notification(address, data)
        if readings is not None:
            self._bad_frames.pop(address, None)
            if readings:
                self._frame_at[address] = self._clock()
                self._failures.pop(address, None)  # authentic data: this patch is fine
                self._unstuck.discard(address)
                self._cache_cleared.discard(address)
                self._heard(address)
            self._queue(readings)
            return True
        bad = self._bad_frames.get(address, 0) + 1
        self._bad_frames[address] = bad
        return bad < self.config.max_bad_frames

    def frame_age(self, address: str) -> float:
        """Seconds since the link's last authentic frame (or since it came up)."""
        return self._clock() - self._frame_at.get(address, self._clock())

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

    def on_read_failed(self, address: str, what: str, exc: Exception) -> None:
        """A best-effort read failed: count it; battery is tried again when next due."""
        self.counters.gatt_read_failures.labels(what).inc()
        if what == "battery":
            previous = self.battery.get(address)
            self.battery[address] = BatteryLevel(
                previous.percent if previous else -1, self._clock()
            )
        log.info("BLE %s: %s read failed (%s); streaming on", address, what, exc)

    # -- AdapterOwner ------------------------------------------------------------------------

    def expects_adverts(self) -> bool:
        """Some paired patch is unlinked, so adverts should be heard."""
        return len(self._links) < len(self.patches)

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
) -> tuple[TimeSource, Callable[[], float]]:
    """The time source and the acquisition clock (seconds) from what the caller gave."""
    if source is not None:
        return source, clock or (lambda: source.monotonic_us() / 1e6)
    if clock is None and now_us is None:
        return SystemTime(), time.monotonic
    injected = InjectedTime(clock or time.monotonic, now_us or (lambda: time.time_ns() // 1000))
    return injected, clock or time.monotonic


def _leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    """The one exception inside nested single-exception groups (else the group itself)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _renamed(runner: AdapterRunner, info: AdapterInfo | None) -> bool:
    """Whether ``runner``'s adapter came back under another name (hci0 → hci1)."""
    return info is not None and info.name != runner.name
