"""One of several rules replicas: it evaluates only while it holds the lease, else it stands by.

Every replica subscribes to every batch (no shared group) in its own persistent session, so
none depends on another's session. A standby acknowledges batches without evaluating them and
keeps the last few minutes of them. When the lease comes free (the active replica died or let
go) it takes over: restore the active's last checkpoint from the database, re-evaluate the
readings stored since and the batches it kept (ingest may not have stored them yet), then
evaluate, tick, publish and checkpoint as the active replica. Alerts are stored idempotently
and published through the outbox, so none is lost and none raised twice; an alert the dead
replica published but had not yet marked published goes out again (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt

from contract import Batch, Reading
from infra.consume import Outage
from infra.errors import InfrastructureUnavailable
from rules.checkpoint import CheckpointStore
from rules.runtime import RuleRuntime

if TYPE_CHECKING:  # psycopg only where PostgreSQL is used
    from rules.lease import AdvisoryLease

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """How often a replica tries for and checks the lease, and what a standby keeps."""

    acquire_every_s: float = 1.0  # a standby asks for the lease this often
    check_every_s: float = 1.0  # the active checks it still holds it this often
    keep_s: float = 300.0  # a standby keeps the batches it received this long
    keep_readings: int = 1_000_000  # ... and at most this many readings


class Replica:
    """Gates a ``RulesWorker``'s batches on the lease; ``run()`` keeps the lease in view."""

    def __init__(
        self,
        runtime: RuleRuntime,
        lease: AdvisoryLease,
        checkpoints: CheckpointStore,
        stored_since: Callable[[int], Sequence[Reading]],
        settings: ReplicaSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.lease = lease
        self.checkpoints = checkpoints
        self.stored_since = stored_since
        self.settings = settings or ReplicaSettings()
        self.takeovers = 0
        self.active = asyncio.Event()  # set while this replica evaluates
        self._client: aiomqtt.Client | None = None
        self._kept: deque[tuple[float, Batch]] = deque()
        self._kept_readings = 0
        self._gate = asyncio.Lock()  # a takeover or stand-down waits for the batch in hand
        self._outage = Outage("rules lease: database")

    def on_client(self, client: aiomqtt.Client | None) -> None:
        """The consume loop's connection (None: lost); the active replica publishes on it."""
        self._client = client
        if self.runtime.active:
            self.runtime.publisher = client

    async def handle(self, batches: Sequence[Batch]) -> None:
        """Evaluate the batches while active; keep them for a takeover while standing by."""
        async with self._gate:
            if self.runtime.active:
                await self.runtime.on_stored(batches)
                return
            now = time.monotonic()
            for batch in batches:
                self._kept.append((now, batch))
                self._kept_readings += len(batch.readings)
            self._trim(now)

    async def run(self) -> None:
        """Take the lease when it is free, stand down when it is lost; forever."""
        s = self.settings
        while True:
            if self.runtime.active:
                if not await asyncio.to_thread(self.lease.check):
                    log.warning(
                        "rules lease %r lost by %s; standing by",
                        self.lease.name,
                        self.lease.holder,
                        extra={"lease": self.lease.name, "holder": self.lease.holder},
                    )
                    await self._stand_down()
                await asyncio.sleep(s.check_every_s)
                continue
            try:
                acquired = await asyncio.to_thread(self.lease.try_acquire)
                if acquired:
                    await self._take_over()
                self._outage.recovered()
                if acquired:
                    continue
            except InfrastructureUnavailable as exc:
                self._outage.failed(exc, s.acquire_every_s)  # logged once per outage
                await self._stand_down()
            await asyncio.sleep(s.acquire_every_s)

    async def _take_over(self) -> None:
        """Restore the checkpoint and catch up, then evaluate (raises on an outage)."""
        started = time.monotonic()
        async with self._gate:
            checkpoint = await asyncio.to_thread(self.checkpoints.load)
            received = [batch for _, batch in self._kept]
            self.runtime.publisher = self._client
            await self.runtime.take_over(checkpoint, self.stored_since, received)
            # The consume loop may have connected during the catch-up, when on_client still saw
            # a standby: without this the active replica would store alerts and never publish.
            self.runtime.publisher = self._client
            self._kept.clear()
            self._kept_readings = 0
        self.takeovers += 1
        self.active.set()
        log.warning(
            "rules lease %r taken by %s: active after %.2fs",
            self.lease.name,
            self.lease.holder,
            time.monotonic() - started,
        )
        await self.runtime.snapshot()  # the next takeover starts from here

    async def _stand_down(self) -> None:
        """Stop evaluating and give the lease up (if it is still held at all)."""
        async with self._gate:
            self.active.clear()
            await self.runtime.stand_down()
            await asyncio.to_thread(self.lease.release)

    def _trim(self, now: float) -> None:
        """Forget kept batches older than ``keep_s`` and beyond ``keep_readings``."""
        s = self.settings
        while self._kept and (
            now - self._kept[0][0] > s.keep_s or self._kept_readings > s.keep_readings
        ):
            _, batch = self._kept.popleft()
            self._kept_readings -= len(batch.readings)
