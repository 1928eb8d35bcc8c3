"""Which paired patches are still talking: silence longer than a limit marks a patch gone.

Every paired patch is tracked from the start (``track``), so one never heard is declared gone
on time. Silence only counts while the gateway could have heard it: while the scanner is known
to be broken (``suspend``) nobody is declared gone, and after it recovers the count starts again
(``floor``). Many patches falling silent in the same sweep is one gateway fault, not many
patient events: ``sweep`` reports them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sweep:
    """Patches newly declared gone, or all at once (a gateway fault, not patient events)."""

    gone: list[str]
    all_silent: list[str]


class Presence:
    """Last time each patch sent something new and authentic, on the caller's clock."""

    def __init__(self, gone_after_s: float, together_s: float = 0.0) -> None:
        self.gone_after_s = gone_after_s
        self.together_s = together_s  # silences starting this close together are "at once"
        self.last_seen: dict[str, float] = {}
        self.gone: set[str] = set()
        self.floor = float("-inf")
        self.suspended = False

    def track(self, addresses: Iterable[str], now: float) -> None:
        """Start counting silence of ``addresses`` from ``now`` (they have not been heard yet)."""
        for address in addresses:
            self.last_seen.setdefault(address, now)

    def seen(self, address: str, now: float) -> bool:
        """Note fresh data from ``address``; True if it had been declared gone."""
        self.last_seen[address] = now
        if address in self.gone:
            self.gone.discard(address)
            return True
        return False

    def suspend(self) -> None:
        """The gateway cannot hear anyone (scanner broken): declare nobody gone."""
        self.suspended = True

    def resume(self, now: float) -> None:
        """Hearing again: silence counts from ``now`` for everyone."""
        self.suspended = False
        self.floor = max(self.floor, now)

    def silent_for(self, address: str, now: float) -> float:
        """Seconds since ``address`` was last heard, or since the floor if later."""
        return now - max(self.last_seen.get(address, now), self.floor)

    def sweep(self, now: float) -> Sweep:
        """Patches silent for longer than the limit and not yet reported, now marked gone.

        When every tracked patch (two or more) has been silent for nearly the limit — their
        silences began within ``together_s`` of each other — they are all reported as
        ``all_silent`` instead: the gateway is deaf, not the patients gone.
        """
        if self.suspended:
            return Sweep([], [])
        limit = now - self.gone_after_s
        newly = [
            a
            for a, t in self.last_seen.items()
            if max(t, self.floor) < limit and a not in self.gone
        ]
        if not newly:
            return Sweep([], [])
        # Everyone else fell silent at about the same moment: the gateway stopped hearing.
        nearly = limit + self.together_s
        rest = [a for a, t in self.last_seen.items() if a not in self.gone and a not in newly]
        if len(self.last_seen) >= 2 and all(
            max(self.last_seen[a], self.floor) < nearly for a in rest
        ):
            together = [*newly, *rest]
            self.gone.update(together)
            return Sweep([], together)
        self.gone.update(newly)
        return Sweep(newly, [])
