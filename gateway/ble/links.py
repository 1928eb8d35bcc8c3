"""Links to patches: connect attempts from an adapter's queue, held links, per-patch backoff.

``PatchLinks`` is the ``LinkOwner`` of every link: it decodes what links notify (through the
intake), hangs up on bad or silent links, reads Device Information and Battery Level on the side,
and backs a patch off only for its own failures — never for a full adapter or a busy controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak_retry_connector import clear_cache, close_stale_connections

from contract.ble.gatt import DeviceInformation
from contract.reading import Reading
from gateway.ble.config import BleConfig
from gateway.ble.connector import Outcome
from gateway.ble.counters import BleCounters
from gateway.ble.intake import PatchIntake
from gateway.ble.link import Ended, StaleGattCache, hold_link, open_link

if TYPE_CHECKING:
    from gateway.ble.adapters import AdapterRunner

log = logging.getLogger(__name__)

IN_PROGRESS = "InProgress"
# How BlueZ words a connect the controller refused for lack of room (HCI "Limited Resources").
_OUT_OF_SLOTS = ("le-connection-abort-by-local", "connection slot", "available connection")


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """A Battery Level read over GATT, and when (acquisition clock)."""

    percent: int
    at: float


class PatchLinks:
    """Every link to a patch, and what is known about each patch's links."""

    def __init__(
        self,
        config: BleConfig,
        counters: BleCounters,
        intake: PatchIntake,
        clock: Callable[[], float],
        deliver: Callable[[list[Reading] | None], None],
        heard: Callable[[str], None],
    ) -> None:
        self.config = config
        self.counters = counters
        self._intake = intake
        self._clock = clock
        self._deliver = deliver
        self._heard = heard
        self.tasks: asyncio.TaskGroup | None = None  # set while the acquisition runs
        self.held: dict[str, asyncio.Task[None]] = {}
        self.device_info: dict[str, DeviceInformation] = {}  # for the installed-base archive
        self.info_unpublished: dict[str, DeviceInformation] = {}  # by address, until published
        self.battery: dict[str, BatteryLevel] = {}
        self.adopting: set[str] = set()  # links BlueZ held at start-up, offered for adoption
        self.peak_links = 0
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._bad_frames: dict[str, int] = {}
        self._frame_at: dict[str, float] = {}
        self._unstuck: set[str] = set()  # InProgress cleaned up once (reset on a link)
        self._cache_cleared: set[str] = set()  # GATT cache cleared once (reset on a link)

    def backing_off(self, address: str) -> bool:
        """Whether ``address`` waits out a backoff (or a reconnect delay)."""
        return self._clock() < self._retry_at.get(address, 0.0)

    async def connect(self, runner: AdapterRunner, device: BLEDevice) -> Outcome:
        """One link attempt through ``runner``'s adapter (its connect worker awaits this)."""
        address = device.address.upper()
        if address in self.held or self.tasks is None:
            return Outcome.SKIPPED
        if self._clock() < self._retry_at.get(address, 0.0):
            return Outcome.SKIPPED
        path = device.details.get("path") if isinstance(device.details, dict) else None
        if runner.bluez is not None and path and not runner.bluez.has_device(path):
            return Outcome.SKIPPED  # BlueZ removed it; its next advert brings it back
        lost = asyncio.Event()
        try:
            client = await open_link(device, self.config, lost.set)
        except Exception as exc:  # one patch's failure must not stop the gateway
            return await self._connect_failed(runner, device, exc)
        if address in self.adopting:
            self.adopting.discard(address)
            self.counters.stale_links.labels("adopted").inc()
        runner.links.linked(address)
        self.peak_links = max(self.peak_links, len(self.held) + 1)
        self.held[address] = self.tasks.create_task(self._hold(runner, device, client, lost))
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
        if address in self.adopting:
            self.adopting.discard(address)  # adoption failed: close it, link afresh on advert
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
            self.held.pop(address, None)
            self._frame_at.pop(address, None)
            runner.links.released(address, device)
            self.counters.connected.set(len(self.held))
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
        self.counters.connected.set(len(self.held))
        log.info("BLE link to %s up (%d links)", address, len(self.held))

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
            self._deliver(readings)
            return True
        bad = self._bad_frames.get(address, 0) + 1
        self._bad_frames[address] = bad
        return bad < self.config.max_bad_frames

    def on_temperature(self, address: str, data: bytes) -> None:
        """A Health Thermometer indication: a reading when it adds to the frames."""
        readings = self._intake.temperature(address, data)
        if readings:
            self._frame_at[address] = self._clock()  # a thermometer-only patch is alive too
            self._heard(address)
            self._deliver(readings)

    def frame_age(self, address: str) -> float:
        """Seconds since the link's last authentic frame (or since it came up)."""
        return self._clock() - self._frame_at.get(address, self._clock())

    def wants_info(self, address: str) -> bool:
        """Device Information is read once per patch."""
        return address not in self.device_info

    def on_info(self, address: str, info: DeviceInformation) -> None:
        """Keep Device Information for the installed-base archive."""
        if self.device_info.get(address) != info:
            self.info_unpublished[address] = info  # reported upstream (gateway/device_info.py)
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
