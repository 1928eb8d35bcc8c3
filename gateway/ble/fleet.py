"""The adapters a gateway uses: one runner per adapter BlueZ shows, followed by its MAC.

Polled from bleak's mirror of BlueZ's object tree (InterfacesAdded/Removed keep it current): a
new adapter gets a runner, a vanished one loses it, one that came back under another name
(hci0 → hci1) gets a fresh runner under its new name. Links BlueZ already holds to paired
patches are offered for adoption first. A bluetoothd restart (org.bluez changing owner) leaves
bleak's mirror stale, so it ends the source; no adapter for long ends it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bleak_retry_connector import BleakSlotManager

from gateway.ble.adapters import AdapterOwner, AdapterRunner
from gateway.ble.bluez import DEFAULT_ADAPTER, AdapterInfo, BlueZ, BlueZRestarted, open_bluez
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters
from gateway.ble.faults import Fault, Faults
from gateway.ble.links import PatchLinks

log = logging.getLogger(__name__)


class AdapterFleet:
    """Runners by adapter MAC, the BlueZ view and bleak-retry-connector's slot manager."""

    def __init__(
        self,
        owner: AdapterOwner,
        links: PatchLinks,
        faults: Faults,
        clock: Callable[[], float],
        knows: Callable[[str], bool],
        on_stopped: Callable[[AdapterRunner], None],
    ) -> None:
        self._owner = owner
        self._config: BleConfig = owner.config
        self._counters: BleCounters = owner.counters
        self._links = links
        self._faults = faults
        self._clock = clock
        self._knows = knows
        self._on_stopped = on_stopped
        self.runners: dict[str, AdapterRunner] = {}
        self._runner_tasks: dict[str, asyncio.Task[None]] = {}
        self.bluez: BlueZ | None = None
        self._slot_manager: BleakSlotManager | None = None
        self.restarted = False

    async def follow(self, tasks: asyncio.TaskGroup) -> None:
        """Keep one runner per adapter BlueZ shows (by MAC), forever."""
        missing_since: float | None = None
        while True:
            if self.restarted:
                raise BlueZRestarted(
                    "bluetoothd restarted (org.bluez changed owner): bleak's view of BlueZ is "
                    "stale; the BLE source ends so that the gateway restarts with a fresh one"
                )
            if self.bluez is None:
                self.bluez = await open_bluez()
                if self.bluez is not None:
                    await self._setup_slots()
                    await self.bluez.watch_restarts(self._on_bluez_restart)
            wanted: dict[str, AdapterInfo | None] = {DEFAULT_ADAPTER: None}
            if self.bluez is not None:
                wanted = dict(self.bluez.adapters())
            for key, runner in list(self.runners.items()):
                if key not in wanted or _renamed(runner, wanted[key]):
                    await self._stop_runner(key)
            for key, info in wanted.items():
                if key not in self.runners:
                    runner = AdapterRunner(
                        self._owner, info, self.bluez, self._slot_manager, self._clock
                    )
                    self._start_runner(tasks, runner)
            missing_since = self._adapters_present(bool(wanted), missing_since)
            self._counters.adapters.set(len(self.runners))
            await asyncio.sleep(self._config.adapter_poll_s)

    def _on_bluez_restart(self) -> None:
        self.restarted = True
        log.error("BLE: bluetoothd restarted")

    def _adapters_present(self, present: bool, since: float | None) -> float | None:
        """Raise ADAPTER_MISSING while BlueZ shows none; give up after a long absence."""
        if present:
            self._faults.clear(Fault.ADAPTER_MISSING, "an adapter is back")
            return None
        now = time.monotonic()
        self._faults.raise_(
            Fault.ADAPTER_MISSING,
            "BlueZ shows no Bluetooth adapter: check the dongle, `rfkill list`, `hciconfig -a`",
        )
        limit = self._config.scanner_retry_max_s * self._config.scanner_max_failures
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
            self._slot_manager.register_adapter(runner.name, self._config.max_connections)
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
        self._on_stopped(runner)
        log.warning("BLE %s: adapter gone", runner.label)

    def _adopt_links(self, runner: AdapterRunner) -> None:
        """Links BlueZ already holds to paired patches (a crashed run's): take them over first."""
        if self.bluez is None or runner.name is None:
            return
        for device in self.bluez.connected(runner.name):
            address = device.address.upper()
            if self._knows(address) and address not in self._links.held:
                log.warning(
                    "BLE %s: BlueZ still holds a link to %s; adopting it", runner.label, address
                )
                self._links.adopting.add(address)
                runner.links.offer(device, None, first=True)

    def _wake_all(self) -> None:
        """A link BlueZ counted came or went (another process's too): look at the queues."""
        for runner in self.runners.values():
            runner.links.restore_capacity()


def _renamed(runner: AdapterRunner, info: AdapterInfo | None) -> bool:
    """Whether ``runner``'s adapter came back under another name (hci0 → hci1)."""
    return info is not None and info.name != runner.name
