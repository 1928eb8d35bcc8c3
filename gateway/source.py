"""The seam between where readings come from and the gateway that forwards them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from contract import Reading

# Where a source hands its readings: the gateway's outbox append, awaited so back-pressure works.
ReadingSink = Callable[[Sequence[Reading]], Awaitable[None]]


class ReadingSource(Protocol):
    """Anything that produces readings for the gateway: simulated patches, BLE, a bridge."""

    name: str

    async def run(self, sink: ReadingSink) -> None:
        """Produce readings into ``sink`` until done or cancelled."""
        ...
