"""The gateway's own clocks on the virtual radio's time, with a wall clock that can be wrong.

A kit without a real-time clock boots with fake-hwclock's last saved time (hours or days behind
after a power loss) and jumps to the right time when NTP synchronises; ``fake_hwclock`` and
``ntp_sync`` script exactly that. The monotonic clock and the boot id never jump.
"""

from __future__ import annotations

from collections.abc import Callable

US_PER_S = 1_000_000


class VirtualGatewayClock:
    """A ``gateway.ble.clock.TimeSource`` driven by simulated time."""

    def __init__(self, monotonic_s: Callable[[], float], true_us: Callable[[], int]) -> None:
        self._monotonic_s = monotonic_s
        self._true_us = true_us
        self.offset_us = 0  # wall clock minus true time
        self.synced: bool | None = True  # timedated's NTPSynchronized; None: cannot tell
        self.boot = "6a1f0e9c-5b2d-4e57-9a51-0c7d2b8e4f11"

    def wall_us(self) -> int:
        """What the gateway's wall clock reads, in µs since the epoch."""
        return self._true_us() + self.offset_us

    def monotonic_us(self) -> int:
        """CLOCK_MONOTONIC in µs: never jumps."""
        return round(self._monotonic_s() * US_PER_S)

    def boot_id(self) -> str:
        """The kernel's boot id: changes at every boot, so monotonic stamps are per boot."""
        return self.boot

    def synchronized(self) -> bool | None:
        """Whether the clock is NTP-synchronised."""
        return self.synced

    def fake_hwclock(self, behind_s: float) -> None:
        """Boot with the clock ``behind_s`` seconds late and not synchronised."""
        self.offset_us = -round(behind_s * US_PER_S)
        self.synced = False

    def ntp_sync(self) -> None:
        """NTP reaches the box: the wall clock jumps to the right time and is synchronised."""
        self.offset_us = 0
        self.synced = True

    def reboot(self, boot_id: str) -> None:
        """A new boot: monotonic stamps from the old one no longer relate to this clock."""
        self.boot = boot_id
