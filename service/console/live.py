"""Live updates: one watcher per process polls the stores, one hub fans changes out to browsers.

The API and the service worker are separate processes, so the API learns of new alerts and
ticket changes from the stores: ONE background task per process asks them, every
``interval_s``, for what changed after the last position it saw (two indexed queries, however
many browsers listen), and publishes one ``Change`` per kind to every subscriber. Subscribers
are bounded queues: a browser that stops reading loses changes, never the process's memory.
The watcher runs while anyone listens and stops with the last subscriber.

Other screens subscribe too (``hub.subscribe()``, or ``hub.publish()`` for changes made in
this process, such as an acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

INTERVAL_S = 0.3
QUEUE = 64  # changes a slow subscriber may lag behind before losing some


@dataclass(frozen=True, slots=True)
class Change:
    """Something changed: ``kind`` ("alert", "ticket", "ack"), where (sites, devices, patients).

    The scope fields let each subscriber drop changes outside its caller's scope, so a browser
    is neither woken nor told of another hospital's alerts.
    """

    kind: str
    sites: frozenset[str] = field(default_factory=frozenset)
    devices: frozenset[str] = field(default_factory=frozenset)
    patients: frozenset[str] = field(default_factory=frozenset)


Probe = Callable[[], list[Change]]  # blocking: what changed since the last call


class LiveHub:
    """Fan-out of changes to subscribers; one watcher task polls ``probe`` while any listen."""

    def __init__(self, probe: Probe | None = None, interval_s: float = INTERVAL_S) -> None:
        self._probe = probe
        self.interval_s = interval_s
        self._queues: set[asyncio.Queue[Change]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.published = 0
        self.polls = 0

    @property
    def subscribers(self) -> int:
        """How many listen now."""
        return len(self._queues)

    @property
    def watching(self) -> bool:
        """Whether the watcher task runs (it does exactly while anyone listens)."""
        return self._watcher is not None and not self._watcher.done()

    def publish(self, change: Change) -> None:
        """Hand ``change`` to every subscriber (dropped for one whose queue is full)."""
        self.published += 1
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Change]]:
        """A queue of the changes from now on, while the block runs."""
        queue: asyncio.Queue[Change] = asyncio.Queue(QUEUE)
        self._queues.add(queue)
        self._ensure_watcher()
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            if not self._queues and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def _ensure_watcher(self) -> None:
        if self._probe is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._probe))

    async def _watch(self, probe: Probe) -> None:
        """Poll until cancelled; a failing store is logged and asked again next time."""
        while True:
            try:
                changes = await asyncio.to_thread(probe)
            except Exception:  # a store outage must not end the feed for good
                log.warning("live feed: polling the stores failed", exc_info=True)
                changes = []
            self.polls += 1
            for change in changes:
                self.publish(change)
            await asyncio.sleep(self.interval_s)
