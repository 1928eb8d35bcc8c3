"""Tuning of BLE acquisition; times are on the acquisition's clock unless named ``wall``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner


@dataclass(frozen=True, slots=True)
class BleConfig:
    """How many links, how often to poll, when to give up; backends None means the OS stack."""

    max_connections: int = 5  # connection slots per adapter (links other processes hold count)
    # The box keeps its clock by NTP (readings wait for a sync); False: a battery-backed RTC
    # without a time server, trusted when not before the build date (docs/ble-field.md).
    clock_ntp: bool = True
    battery_every_s: float = 600.0
    gone_after_s: float = 180.0
    reconnect_after_s: float = 2.0  # after a drop, before trying that patch again
    backoff_max_s: float = 300.0  # ceiling of the per-patch backoff after failed connects
    connect_attempts: int = 3  # per establish_connection call
    max_bad_frames: int = 5  # consecutive refused notifications before we hang up on a link
    # The patches' measurement interval (set at pairing); a link that brings no authentic frame
    # for ``link_silence_intervals`` of them is hung up, so a mute patch does not keep a slot.
    measure_every_s: float = 1.0
    link_silence_intervals: float = 10.0
    wall_poll_s: float = 1.0  # how often battery reads and the scan duty cycle are checked
    wall_sweep_s: float = 5.0  # how often silence, the watchdog and the clock are checked
    outbox_readings: int = 50_000  # readings buffered for the sink before dropping new ones
    batch_readings: int = 1_000  # at most this many readings per sink call
    # Scan duty cycle on the acquisition clock: scan ``scan_window_s`` out of every
    # ``scan_every_s``; None scans without pause. Linked patches notify whether or not we scan.
    scan_window_s: float | None = None
    scan_every_s: float = 60.0
    # Active scanning gets the scan response, which carries the patch service UUID (how a
    # connectable patch is told from an advertising-only one); passive scanning tries a link
    # with any paired patch it hears.
    scanning_mode: Literal["active", "passive"] = "active"
    # Scanner start/stop as habluetooth does them (wall clock): a timeout per call, a few
    # attempts per start (the second power-cycles the adapter on errors that call for it),
    # then start cycles backing off from ``scanner_retry_s`` to ``scanner_retry_max_s``; after
    # ``scanner_max_failures`` failed cycles in a row the source gives up (the process exits).
    scanner_start_timeout_s: float = 15.0
    scanner_stop_timeout_s: float = 5.0
    scanner_start_attempts: int = 4
    scanner_retry_s: float = 1.5
    scanner_retry_max_s: float = 60.0
    scanner_max_failures: int = 10
    adapter_off_s: float = 1.0  # wall: how long a power cycle keeps the adapter off
    # Watchdog: scanning this long (scan time, not wall time) without any advert while some
    # paired patch is unlinked restarts the scanner; if that does not help, the adapter is
    # power-cycled; each further try waits twice as long (up to 8x).
    watchdog_silence_s: float = 90.0
    adapter_poll_s: float = 5.0  # wall: how often adapters are looked up (appear/disappear)
    candidate_ttl_s: float = 10.0  # a queued connect whose advert is older is forgotten
    flush_timeout_s: float = 10.0  # on stop, how long the sink may take for what is queued
    # Where replay high-water marks persist across restarts; None keeps them in memory only.
    replay_marks_path: Path | None = None
    # Readings taken while the clock is not trusted wait here (None: in memory only) and are
    # re-stamped once it is; at most ``held_max_readings`` of them.
    held_path: Path | None = None
    held_max_readings: int = 500_000
    scanner_backend: type[BaseBleakScanner] | None = None
    client_backend: type[BaseBleakClient] | None = None

    def __post_init__(self) -> None:
        if self.scan_window_s is not None and not 0 < self.scan_window_s <= self.scan_every_s:
            raise ValueError(
                f"scan window {self.scan_window_s} s must be within (0, {self.scan_every_s}] s"
            )
        if self.max_connections < 0:
            raise ValueError("max_connections cannot be negative")
        if self.scanner_start_attempts < 1 or self.scanner_max_failures < 1:
            raise ValueError("scanner_start_attempts and scanner_max_failures must be at least 1")

    @property
    def link_silence_s(self) -> float:
        """How long a link may bring no authentic frame before we hang up."""
        return self.link_silence_intervals * self.measure_every_s
