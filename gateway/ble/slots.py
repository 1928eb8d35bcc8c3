"""Connection slots: how many patches may be connected at once (adapters have few)."""

from __future__ import annotations


class ConnectionSlots:
    """A non-blocking semaphore: a patch without a slot is served by its adverts instead of
    queueing, so waiting connects never pile up behind a full adapter."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("slot count cannot be negative")
        self.size = size
        self.in_use = 0
        self.peak = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.in_use >= self.size:
            return False
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        return True

    def release(self) -> None:
        """Give a slot back."""
        if self.in_use <= 0:
            raise RuntimeError("released a connection slot that was not taken")
        self.in_use -= 1
