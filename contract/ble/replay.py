"""Replay protection: accept each device's counters only in strictly increasing order."""

from __future__ import annotations

from enum import StrEnum


class ReplayReason(StrEnum):
    """Why a counter was refused; the gateway counts these per reason."""

    REPLAYED = "replayed"  # equal to the last accepted counter
    STALE = "stale"  # lower than the last accepted counter
    INVALID = "invalid"  # not a uint32


class ReplayGuard:
    """The last accepted counter per device.

    Feed it only frames that already passed authentication, or a forger could push a device's
    counter up and lock out its genuine frames.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def check(self, device_id: str, counter: int) -> ReplayReason | None:
        """Why ``counter`` would be refused, or None if it would be accepted; changes nothing."""
        if not 0 <= counter <= 0xFFFF_FFFF:
            return ReplayReason.INVALID
        last = self._last.get(device_id)
        if last is None or counter > last:
            return None
        return ReplayReason.REPLAYED if counter == last else ReplayReason.STALE

    def accept(self, device_id: str, counter: int) -> ReplayReason | None:
        """Record ``counter`` if it is new (returning None), else return why it was refused."""
        reason = self.check(device_id, counter)
        if reason is None:
            self._last[device_id] = counter
        return reason

    def last(self, device_id: str) -> int | None:
        """The last counter accepted from ``device_id``."""
        return self._last.get(device_id)

    def forget(self, device_id: str) -> None:
        """Drop a device's history, as on re-pairing with a new key (its counter restarts)."""
        self._last.pop(device_id, None)
