"""The scanner watchdog: is an adapter still hearing anything, and what to do if not.

Two signs of a broken scanner: BlueZ's ``Discovering`` went false while we scan (the kernel or
bluetoothd stopped it), or no advert at all came for ``silence_s`` of scanning time although a
paired patch is unlinked (and so advertising). The first remedy is a scanner restart; if the
adapter stays silent after it, a power cycle; every further try waits twice as long (up to 8x),
so an empty room is not power-cycled every minute and a fault is raised once, not every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    """What the adapter's scanner needs now."""

    OK = "ok"
    RESTART = "restart"
    POWER_CYCLE = "power_cycle"


@dataclass
class ScanWatchdog:
    """Silence accounting for one adapter, on the acquisition clock."""

    silence_s: float
    quiet_s: float = 0.0  # scanning time since the last advert (or the last remedy)
    tries: int = 0  # remedies since the last advert
    _last_tick: float | None = None
    _last_heard: float = float("-inf")

    @property
    def faulted(self) -> bool:
        """Whether the watchdog has acted since the last advert (a gateway fault is up)."""
        return self.tries > 0

    def heard(self, now: float) -> bool:
        """An advert arrived at ``now``; True if this ends a fault."""
        was = self.faulted
        self.quiet_s = 0.0
        self.tries = 0
        self._last_heard = now
        return was

    def tick(
        self, now: float, *, scanning: bool, discovering: bool | None, expected: bool
    ) -> Verdict:
        """Account the scanning time since the last tick (or advert) and judge the scanner."""
        if self._last_tick is not None and scanning:
            self.quiet_s += max(0.0, now - max(self._last_tick, self._last_heard))
        self._last_tick = now
        if not scanning:
            return Verdict.OK
        factor = min(8, 2 ** max(0, self.tries - 1))
        patience = self.silence_s * factor
        if discovering is False and self.quiet_s > min(self.silence_s / 9, 5.0) * factor:
            return self._act()  # BlueZ says we are not scanning although we think we are
        if expected and self.quiet_s > patience:
            return self._act()
        return Verdict.OK

    def _act(self) -> Verdict:
        self.tries += 1
        self.quiet_s = 0.0
        return Verdict.RESTART if self.tries == 1 else Verdict.POWER_CYCLE
