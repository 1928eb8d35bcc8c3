"""One gateway-level alert when a gateway keeps reporting devices it may not report.

A few unregistered readings are an installed base lagging behind an installation; many within
an hour are a misconfigured or compromised gateway, which a person must look at. The alarm counts
each gateway's unregistered readings in a sliding window and raises one alert (on the gateway's
own alert topic, like its outbox overflow alert) when the count reaches the threshold, then at
most one more per window while it goes on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from contract import AlertEvent, AlertTransition, Severity

RULE_ID = "ingest.unregistered_devices"


class UnregisteredAlarm:
    """Counts unregistered readings per gateway; ``note`` returns the alert when one is due."""

    def __init__(
        self,
        threshold: int,
        window_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[str, deque[tuple[float, int]]] = {}  # gateway → (time, readings)
        self._raised_at: dict[str, float] = {}

    def in_window(self, gateway_id: str) -> int:
        """Unregistered readings of ``gateway_id`` within the window."""
        seen = self._seen.get(gateway_id)
        if not seen:
            return 0
        horizon = self.clock() - self.window_s
        while seen and seen[0][0] < horizon:
            seen.popleft()
        return sum(n for _, n in seen)

    def note(self, gateway_id: str, readings: int, example: str, at_us: int) -> AlertEvent | None:
        """Count ``readings`` more of ``gateway_id``; the alert to publish if one is due now."""
        now = self.clock()
        self._seen.setdefault(gateway_id, deque()).append((now, readings))
        count = self.in_window(gateway_id)
        last = self._raised_at.get(gateway_id)
        if count < self.threshold or (last is not None and now - last < self.window_s):
            return None
        self._raised_at[gateway_id] = now
        return AlertEvent(
            device_id=gateway_id,
            rule_id=RULE_ID,
            severity=Severity.WARNING,
            transition=AlertTransition.RAISED,
            at_us=at_us,
            message=(
                f"gateway {gateway_id} reported {count} readings of devices not registered to "
                f"its site within {self.window_s / 60:.0f} min; they were dead-lettered"
            ),
            evidence={
                "unregistered_readings": count,
                "window_s": self.window_s,
                "threshold": self.threshold,
                "example": example,
            },
        )
