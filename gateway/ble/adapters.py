"""One adapter at work: its scanner (duty cycle, watchdog, recovery) and its connect queue.

An ``AdapterRunner`` lives as long as its adapter: the acquisition starts one per MAC that BlueZ
shows and cancels it when the adapter goes (unplugged, bluetoothd restarted) — a re-created
adapter (hci0 → hci1, same MAC) gets a fresh runner under its new name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gateway.ble.bluez import DEFAULT_ADAPTER, AdapterInfo, BlueZ
from gateway.ble.config import BleConfig
from gateway.ble.connector import AdapterLinks, Outcome
from gateway.ble.counters import BleCounters
from gateway.ble.scan_control import ScanControl, ScannerStartError
from gateway.ble.watchdog import ScanWatchdog, Verdict

log = logging.getLogger(__name__)


class AdapterOwner(Protocol):
    """What a runner reports to, and asks, the acquisition."""

    config: BleConfig
    counters: BleCounters

    def on_advert(self, runner: AdapterRunner, device: BLEDevice, adv: AdvertisementData) -> None:
        """An advert came in through ``runner``'s scanner."""

    async def connect(self, runner: AdapterRunner, device: BLEDevice) -> Outcome:
        """Try one link to ``device`` through ``runner``'s adapter."""
        ...

    def expects_adverts(self) -> bool:
        """Whether some paired patch should be advertising (not linked)."""
        ...

    def scanner_failing(self, runner: AdapterRunner, failures: int, why: str) -> None:
        """Start cycles failed ``failures`` times in a row (0: it started)."""

    def scanner_silent(self, runner: AdapterRunner, silent: bool, why: str) -> None:
        """The watchdog found the scanner deaf (True), or it hears again (False)."""


class AdapterRunner:
    """Scanner and connects of one adapter (``info`` None: the platform's default adapter)."""

    def __init__(
        self,
        owner: AdapterOwner,
        info: AdapterInfo | None,
        bluez: BlueZ | None,
        slot_manager: Any | None,
        clock: Callable[[], float],
    ) -> None:
        config = owner.config
        self.owner = owner
        self.info = info
        self.key = info.address if info is not None else DEFAULT_ADAPTER
        self.name = info.name if info is not None else None
        self._bluez = bluez
        self._clock = clock
        self.scan = ScanControl(self.name, self._on_advert, config, owner.counters, bluez)
        self.watchdog = ScanWatchdog(config.watchdog_silence_s)
        self.links = AdapterLinks(
            self.name or DEFAULT_ADAPTER,
            config.max_connections,
            slot_manager,
            clock,
            config.candidate_ttl_s,
        )
        self.links.on_slot_wait = owner.counters.slot_waits.inc

    @property
    def bluez(self) -> BlueZ | None:
        """The BlueZ this adapter lives in (None: no BlueZ here)."""
        return self._bluez

    @property
    def label(self) -> str:
        """``hci0 (00:1A:…)`` for logs."""
        return f"{self.name} ({self.key})" if self.name else "default adapter"

    def discovering(self) -> bool | None:
        """BlueZ's Adapter1.Discovering (None without BlueZ)."""
        if self._bluez is None or self.name is None:
            return None
        return self._bluez.discovering(self.name)

    async def run(self) -> None:
        """Scan and connect until cancelled; raise once the scanner cannot be started."""
        config = self.owner.config
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self.links.run(lambda device: self.owner.connect(self, device), config.wall_poll_s)
            )
            try:
                await self._scan_loop()
            finally:
                if self.scan.scanning:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.scan.stop())

    async def _scan_loop(self) -> None:
        config = self.owner.config
        failures, backoff = 0, config.scanner_retry_s
        while True:
            due = self._due()
            if due and not self.scan.scanning:
                try:
                    await self.scan.start()
                except ScannerStartError as exc:
                    failures += 1
                    self.owner.scanner_failing(self, failures, str(exc))
                    if failures >= config.scanner_max_failures:
                        raise
                    await asyncio.sleep(backoff)
                    backoff = min(2 * backoff, config.scanner_retry_max_s)
                    continue
                if failures:
                    self.owner.scanner_failing(self, 0, "started")
                failures, backoff = 0, config.scanner_retry_s
            elif not due and self.scan.scanning:
                await self.scan.stop()  # a refused stop marks the scanner stuck: next start heals
            verdict = self.watchdog.tick(
                self._clock(),
                scanning=self.scan.scanning,
                discovering=self.discovering(),
                expected=self.owner.expects_adverts(),
            )
            if verdict is not Verdict.OK:
                await self._remedy(verdict)
            await asyncio.sleep(config.wall_poll_s)

    async def _remedy(self, verdict: Verdict) -> None:
        """Restart the scanner; power-cycle the adapter if a restart already did not help."""
        why = (
            "Discovering went false while scanning"
            if self.discovering() is False
            else f"no advert for {self.watchdog.silence_s:g} s of scanning"
        )
        self.owner.counters.scanner_restarts.inc()
        self.owner.scanner_silent(self, True, why)
        log.warning("BLE %s: %s; %s", self.label, why, verdict.value.replace("_", " "))
        await self.scan.stop()
        if verdict is Verdict.POWER_CYCLE and await self.scan.power_cycle(why):
            self.links.restore_capacity()
        # The loop starts the scanner again at once (it is due) or in the next window.

    def _due(self) -> bool:
        """Whether the duty cycle wants the scanner on now."""
        config = self.owner.config
        window = config.scan_window_s
        if window is None or window >= config.scan_every_s:
            return True
        # Polled on the acquisition clock, so simulated time drives the cycle in tests.
        return self._clock() % config.scan_every_s < window

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self.owner.counters.adverts.inc()
        if self.watchdog.heard(self._clock()):
            self.owner.scanner_silent(self, False, "adverts are heard again")
        self.owner.on_advert(self, device, adv)
