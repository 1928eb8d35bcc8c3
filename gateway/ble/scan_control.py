"""Start and stop one adapter's scanner the way habluetooth does: timeouts, retries, resets.

BlueZ answers StartDiscovery with ``NotReady`` while the adapter is not powered yet (rfkill on a
fresh image, bluetoothd starting after us), with ``InProgress`` when a previous discovery is
wedged, with ``UnknownObject`` while the adapter object is being created; a stop can time out or
be refused ``InProgress`` (bleak retries that once itself; what reaches us means bluetoothd's
discovery state is stuck, bluez#807, and only a power cycle clears it). None of this may end the
BLE source: a start is tried ``scanner_start_attempts`` times (the second after a power cycle
when the error calls for one), and a failed stop is logged, counted and repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.scanner import AdvertisementDataCallback
from bleak.exc import BleakError

from contract.ble import uuids
from gateway.ble.bluez import BlueZ
from gateway.ble.config import BleConfig
from gateway.ble.counters import BleCounters

log = logging.getLogger(__name__)

IN_PROGRESS = "org.bluez.Error.InProgress"
# Errors after which habluetooth resets the adapter on its second attempt.
NEEDS_RESET = ("org.bluez.Error.Failed", IN_PROGRESS, "org.bluez.Error.NotReady", "not found")
ADAPTER_INITIALISING = "org.freedesktop.DBus.Error.UnknownObject"
ADAPTER_INIT_S = 1.5
# Passive scanning needs a BlueZ advertisement-monitor pattern: BTHome service data (0xFCD2).
_BTHOME_PATTERN = OrPattern(
    0, AdvertisementDataType.SERVICE_DATA_UUID16, uuids.BTHOME_UUID16.to_bytes(2, "little")
)


class ScannerStartError(Exception):
    """The scanner did not start after every attempt; the message says what to try."""


class ScanControl:
    """One BleakScanner on one adapter (None: the platform's default adapter)."""

    def __init__(
        self,
        adapter: str | None,
        callback: AdvertisementDataCallback,
        config: BleConfig,
        counters: BleCounters,
        bluez: BlueZ | None,
    ) -> None:
        self.adapter = adapter
        self._callback = callback
        self._config = config
        self._counters = counters
        self._bluez = bluez
        self._scanner: BleakScanner | None = None
        self.scanning = False
        self.stuck = False  # a stop was refused InProgress: discovery needs a power cycle

    @property
    def name(self) -> str:
        """The adapter's name for logs."""
        return self.adapter or "default adapter"

    async def start(self) -> None:
        """Start scanning, or raise ScannerStartError after every attempt failed."""
        attempts = self._config.scanner_start_attempts
        for attempt in range(1, attempts + 1):
            problem = await self._attempt(attempt)
            if problem is None:
                self.scanning = True
                self._counters.scanner_starts.inc()
                return
            self._counters.scanner_start_failures.inc()
            log.info("BLE %s: start %d/%d failed: %s", self.name, attempt, attempts, problem)
        raise ScannerStartError(
            f"{self.name}: scanning did not start after {attempts} attempts ({problem}); "
            "check `rfkill list` (unblock bluetooth), `bluetoothctl show` (Powered: yes) and "
            "that bluetoothd runs (`systemctl status bluetooth`)"
        )

    async def _attempt(self, attempt: int) -> str | None:
        """One start; the problem text if it failed."""
        if self.stuck:
            await self.power_cycle("a stop was refused InProgress")
        scanner = self._new_scanner()
        try:
            async with asyncio.timeout(self._config.scanner_start_timeout_s):
                await scanner.start()
        except TimeoutError:
            await self._quiet_stop(scanner)
            if attempt == 2:
                await self.power_cycle("start timed out")
            return f"timed out after {self._config.scanner_start_timeout_s:g} s"
        except (BleakError, OSError) as exc:
            await self._quiet_stop(scanner)
            text = str(exc) or type(exc).__name__
            if IN_PROGRESS in text:
                await self._force_stop_discovery()
            if attempt == 2 and any(e in text for e in NEEDS_RESET):
                await self.power_cycle(text)
            elif ADAPTER_INITIALISING in text:
                await asyncio.sleep(ADAPTER_INIT_S)
            return text
        self._scanner = scanner
        return None

    async def stop(self) -> bool:
        """Stop scanning; False (logged, counted) if the stop failed or timed out."""
        scanner, self._scanner = self._scanner, None
        self.scanning = False
        if scanner is None:
            return True
        try:
            async with asyncio.timeout(self._config.scanner_stop_timeout_s):
                await scanner.stop()
        except (TimeoutError, BleakError, OSError) as exc:
            self._counters.scanner_stop_failures.inc()
            text = str(exc) or type(exc).__name__
            if IN_PROGRESS in text:
                self.stuck = True  # bleak already retried: only a power cycle clears it
            log.warning("BLE %s: scanner stop failed (%s)", self.name, text)
            return False
        return True

    async def power_cycle(self, why: str) -> bool:
        """Power the adapter off and on (BlueZ only); True if it was done."""
        if self._bluez is None or self.adapter is None:
            return False
        log.warning("BLE %s: power-cycling the adapter (%s)", self.name, why)
        try:
            async with asyncio.timeout(self._config.scanner_stop_timeout_s * 2):
                await self._bluez.power_cycle(self.adapter, self._config.adapter_off_s)
        except (TimeoutError, BleakError, OSError) as exc:
            log.warning("BLE %s: power cycle failed (%s)", self.name, exc)
            return False
        self._counters.power_cycles.inc()
        self.stuck = False
        return True

    def _new_scanner(self) -> BleakScanner:
        bluez: dict[str, Any] = {}
        if self.adapter is not None:
            bluez["adapter"] = self.adapter
        if self._config.scanning_mode == "passive":
            bluez["or_patterns"] = [_BTHOME_PATTERN]
        return BleakScanner(
            self._callback,
            scanning_mode=self._config.scanning_mode,
            bluez=bluez,  # type: ignore[arg-type]
            backend=self._config.scanner_backend,
        )

    async def _quiet_stop(self, scanner: BleakScanner) -> None:
        with contextlib.suppress(TimeoutError, BleakError, OSError):
            async with asyncio.timeout(self._config.scanner_stop_timeout_s):
                await scanner.stop()

    async def _force_stop_discovery(self) -> None:
        """StopDiscovery outside bleak's session (bleak-retry-connector's helper)."""
        if self._bluez is None or self.adapter is None:
            return
        from bleak_retry_connector.bluez import stop_discovery

        try:
            async with asyncio.timeout(self._config.scanner_stop_timeout_s):
                await stop_discovery(self.adapter)
        except Exception as exc:  # best effort, as habluetooth: never let recovery raise
            log.debug("BLE %s: force stop failed: %s", self.name, exc)
