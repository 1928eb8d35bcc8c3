"""Which paired patches are still talking: silence longer than a limit marks a patch gone."""

from __future__ import annotations


class Presence:
    """Last time each patch sent something new and authentic, on the caller's clock."""

    def __init__(self, gone_after_s: float) -> None:
        self.gone_after_s = gone_after_s
        self.last_seen: dict[str, float] = {}
        self.gone: set[str] = set()

    def seen(self, address: str, now: float) -> bool:
        """Note fresh data from ``address``; True if it had been declared gone."""
        self.last_seen[address] = now
        if address in self.gone:
            self.gone.discard(address)
            return True
        return False

    def sweep(self, now: float) -> list[str]:
        """Patches silent for longer than the limit and not yet reported, now marked gone."""
        limit = now - self.gone_after_s
        newly = [a for a, t in self.last_seen.items() if t < limit and a not in self.gone]
        self.gone.update(newly)
        return newly
