"""Tuning of BLE acquisition; times are on the acquisition's clock unless named ``wall``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner


@dataclass(frozen=True, slots=True)
class BleConfig:
    """How many links, how often to poll, when to give up; backends None means the OS stack."""

    max_connections: int = 5
    battery_every_s: float = 600.0
    gone_after_s: float = 180.0
    reconnect_after_s: float = 2.0  # after a drop, before trying that patch again
    backoff_max_s: float = 300.0  # ceiling of the per-patch backoff after failed connects
    connect_attempts: int = 3  # per establish_connection call
    max_bad_frames: int = 5  # consecutive refused notifications before we hang up on a link
    wall_poll_s: float = 1.0  # how often battery reads and the scan duty cycle are checked
    wall_sweep_s: float = 5.0  # how often silence is checked
    outbox_readings: int = 50_000  # readings buffered for the sink before dropping new ones
    batch_readings: int = 1_000  # at most this many readings per sink call
    # Scan duty cycle on the acquisition clock: scan ``scan_window_s`` out of every
    # ``scan_every_s``; None scans without pause. Linked patches notify whether or not we scan.
    scan_window_s: float | None = None
    scan_every_s: float = 60.0
    flush_timeout_s: float = 10.0  # on stop, how long the sink may take for what is queued
    # Where replay high-water marks persist across restarts; None keeps them in memory only.
    replay_marks_path: Path | None = None
    scanner_backend: type[BaseBleakScanner] | None = None
    client_backend: type[BaseBleakClient] | None = None

    def __post_init__(self) -> None:
        if self.scan_window_s is not None and not 0 < self.scan_window_s <= self.scan_every_s:
            raise ValueError(
                f"scan window {self.scan_window_s} s must be within (0, {self.scan_every_s}] s"
            )
        if self.max_connections < 0:
            raise ValueError("max_connections cannot be negative")
