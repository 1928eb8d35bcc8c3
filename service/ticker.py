"""The service worker's periodic jobs: escalations, SLA breach scan and schedules, every tick.

Each job commits its ticket changes together with their outbox rows, re-deciding from fresh
reads when a ticket write loses a race. A storage outage skips the round (logged once per
outage) and the next tick tries again; the breach scan's persisted cursor makes the round after
the outage report what the skipped ones would have.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from infra.consume import Outage
from infra.errors import StorageUnavailable
from service import desk
from service.checkpoint_export import CheckpointExporter
from service.model import Ticket
from service.notifications import (
    Notification,
    breach_notification,
    escalation_notifications,
    opened_notifications,
    outbox_items,
    wall_clock,
)
from service.sla import Breach
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)

BREACH_CURSOR = "breach_scan"  # the store cursor: breaches are reported up to this instant


class Ticker:
    """``await Ticker(settings, store).run()`` runs the periodic jobs every ``tick_s``."""

    def __init__(
        self,
        settings: WorkerSettings,
        store: ServiceStore,
        *,
        clock: Callable[[], datetime] = wall_clock,
        on_commit: Callable[[], None] | None = None,
        checkpoints: CheckpointExporter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.checkpoints = checkpoints  # signs and exports the audit head every tick
        self.on_commit = on_commit  # told after each round that may have queued notifications
        self.outage = Outage("service ticker: storage")

    async def run(self) -> None:
        """Tick forever; neither an outage nor a failing job stops the next round."""
        while True:
            await asyncio.sleep(self.settings.tick_s)
            await self.guarded(self.tick)

    async def guarded(self, job: Callable[[], Awaitable[object]]) -> None:
        """Await ``job()``; an outage or a bug is logged (an outage once) and not raised."""
        try:
            await job()
        except StorageUnavailable as exc:
            self.outage.failed(exc, self.settings.tick_s)
            return
        except Exception:
            log.exception("periodic service jobs failed; retrying next tick")
            return
        self.outage.recovered()

    async def tick(self, now: datetime | None = None) -> None:
        """Run escalations, breach detection and schedules once, at ``now``."""
        now = now or self.clock()
        await asyncio.to_thread(desk.retrying, self.store, lambda: self._escalate(now))
        await self.scan_breaches(now)
        await asyncio.to_thread(desk.retrying, self.store, lambda: self._schedule(now))
        if self.checkpoints is not None:
            await asyncio.to_thread(self.checkpoints.export, self.store, now)
        self._committed()

    async def scan_breaches(self, now: datetime | None = None) -> list[Breach]:
        """Report breaches since the persisted scan position (downtime included) up to ``now``."""
        at = now or self.clock()
        found = await asyncio.to_thread(desk.retrying, self.store, lambda: self._scan(at))
        self._committed()
        return found

    def _committed(self) -> None:
        if self.on_commit is not None:
            self.on_commit()

    def _enqueue(self, notes: Iterable[Notification], now: datetime) -> None:
        self.store.enqueue_notifications(outbox_items(notes, self.settings.notify, now))

    def _escalate(self, now: datetime) -> None:
        sla, store = self.settings.sla, self.store
        for result in desk.run_escalations(store, now, sla):
            device = store.device(result.ticket.device_id)
            self._enqueue(escalation_notifications(result, device, now, sla), now)

    def _schedule(self, now: datetime) -> None:
        store, sla = self.store, self.settings.sla
        opened: list[Ticket] = desk.run_schedules(
            store, now, self.settings.schedules, lambda: uuid.uuid4().hex
        )
        for ticket in opened:
            device = store.device(ticket.device_id)
            self._enqueue(opened_notifications(ticket, device, now, sla), now)

    def _scan(self, now: datetime) -> list[Breach]:
        store = self.store
        since = store.cursor(BREACH_CURSOR)
        if since is not None and since >= now:
            return []  # a clock that went back: never report a window twice
        # The first run ever has nothing to catch up on: it starts the scan here.
        found = [] if since is None else desk.breaches(store, since, now, self.settings.sla)
        self._enqueue((breach_notification(b) for b in found), now)
        store.set_cursor(BREACH_CURSOR, now)
        return found
