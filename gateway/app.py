"""The gateway process: sources → outbox → uplink, as one async context manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from contract import Reading, reading_problem
from gateway.counters import GatewayCounters
from gateway.equipment_bridge import EquipmentBridge, SiteBrokerSettings
from gateway.outbox import Outbox
from gateway.source import ReadingSource
from gateway.uplink import Uplink, UplinkSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything one gateway box needs to know."""

    gateway_id: str = "gw-1"
    outbox_path: Path = Path("var/gateway-outbox.db")
    outbox_max_readings: int = 10_000_000
    outbox_max_bytes: int | None = None  # also bound the outbox's live database pages
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    site_broker: SiteBrokerSettings | None = None  # None: no equipment to bridge


class Gateway:
    """Runs every source and the uplink until the context exits.

    ``async with Gateway(settings, sources) as gateway: await gateway.drained()``
    """

    def __init__(
        self,
        settings: GatewaySettings,
        sources: Sequence[ReadingSource] = (),
        counters: GatewayCounters | None = None,
    ) -> None:
        self.settings = settings
        self.counters = counters or GatewayCounters()
        settings.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            settings.outbox_path,
            settings.gateway_id,
            settings.outbox_max_readings,
            settings.outbox_max_bytes,
        )
        self.uplink = Uplink(self.outbox, settings.uplink, self.counters)
        self.sources: list[ReadingSource] = list(sources)
        self.bridge: EquipmentBridge | None = None
        if settings.site_broker is not None:
            self.bridge = EquipmentBridge(
                settings.site_broker, self.outbox, self.counters, settings.gateway_id
            )
            self.sources.append(self.bridge)
        self._tasks: list[asyncio.Task[None]] = []
        self._source_tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        for source in self.sources:
            task = asyncio.create_task(source.run(self.accept), name=f"source:{source.name}")
            self._source_tasks.append(task)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = [*self._source_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            # Cancel again until it takes: on Python 3.11 asyncio.wait_for (inside aiomqtt)
            # can lose a cancel that races its inner future (CPython gh-86296), and the outbox
            # must not close under a still-running uplink.
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.outbox.close()

    async def accept(self, readings: Sequence[Reading]) -> None:
        """The sink every source writes to: validate, persist, wake the uplink."""
        good: list[Reading] = []
        for reading in readings:
            problem = reading_problem(
                reading.device_id,
                reading.metric,
                reading.value,
                reading.unit,
                reading.ts_us,
                reading.seq,
            )
            if problem is None:
                good.append(reading)
            else:
                # Bad values are kept aside, never forwarded and never silently lost.
                self.counters.readings_rejected.labels(reason="invalid_reading").inc()
                await asyncio.to_thread(
                    self.outbox.dead_letter,
                    time.time_ns() // 1000,
                    reading.device_id,
                    problem,
                    repr(reading).encode(),
                )
        if not good:
            return
        dropped = await asyncio.to_thread(self.outbox.append, good)
        self.counters.readings_in.labels(source="all").inc(len(good))
        if dropped:
            self.counters.dropped_readings.inc(dropped)
            log.error("outbox bound reached: dropped the %d oldest readings", dropped)
            await self.uplink.check_alarm()  # raised as an alert upstream, never silent
        self.uplink.wake()

    async def sources_done(self) -> None:
        """Wait until every finite source (e.g. a simulator run) has finished."""
        finite = [
            t for t, s in zip(self._source_tasks, self.sources, strict=True) if s is not self.bridge
        ]
        if finite:
            await asyncio.gather(*finite)

    async def drained(self, poll_s: float = 0.05) -> None:
        """Wait until the outbox is empty: ingest confirmed storing everything produced so far.

        (With ``require_confirmation`` off: the broker acknowledged it.) Unconfirmed readings
        stay pending, so with ingest down this waits until it is back.
        """
        while True:
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
            stats = await asyncio.to_thread(self.outbox.stats)
            self.counters.outbox_pending.set(stats.pending_readings)
            if stats.pending_readings == 0:
                return
            await asyncio.sleep(poll_s)
