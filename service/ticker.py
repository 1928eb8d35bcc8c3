"""The service worker's periodic jobs, every tick: retried dispatch, escalations, SLA breach scan
and schedules.

A tick does only what is due: each job finds its rows through indexed instants the store keeps
with every ticket and device (escalation and breach instants, last inspection, warranty end),
then commits each ticket change, with its outbox rows, in a short transaction of its own —
re-deciding from fresh reads when a ticket write loses a race. Alert intake runs between those
transactions (on SQLite) or beside them (PostgreSQL, a connection each), never behind a whole
tick. A storage outage skips the round (logged once per outage) and the next tick tries again;
the breach scan's persisted cursor makes the round after the outage report what the skipped
ones would have.

Each tick also re-derives the clock columns of a bounded number of tickets computed under
another SLA configuration (``ServiceStore.refresh_clocks``); the worker refreshes all of them
when it starts, so a changed [sla] section takes effect at the restart that loads it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from functools import partial

from infra.consume import Outage
from infra.errors import StorageUnavailable
from service import desk
from service.checkpoint_export import CheckpointExporter
from service.compensation import ServiceCredit, credit_for
from service.model import Ticket
from service.notifications import (
    Notification,
    breach_notification,
    escalation_notifications,
    low_stock_notification,
    opened_notifications,
    ticket_notifications,
    wall_clock,
)
from service.parts import Stock
from service.quiet_hours import notify_items
from service.schedules import ScheduledTask
from service.sla import Breach
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)

BREACH_CURSOR = "breach_scan"  # the store cursor: breaches are reported up to this instant
REFRESH_PER_TICK = 2_000  # tickets with stale clock columns re-derived per tick at most
LOW_STOCK_PER_TICK = 200  # low-stock rows the team is told about per tick at most
WAITING_PER_TICK = 500  # undispatched tickets (oldest first) offered to engineers per tick


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
        self.escalations = 0  # tickets escalated, for metrics
        self.breaches = 0  # SLA breaches reported, for metrics

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

    async def refresh(self, limit: int | None = None) -> int:
        """Re-derive clock columns computed under another SLA configuration; how many."""
        return await asyncio.to_thread(self.store.refresh_clocks, limit)

    async def tick(self, now: datetime | None = None) -> None:
        """Run escalations, breach detection and schedules once, at ``now``."""
        now = now or self.clock()
        await self.refresh(REFRESH_PER_TICK)
        await asyncio.to_thread(self._dispatch_waiting, now)
        await asyncio.to_thread(self._escalate, now)
        await self.scan_breaches(now)
        await asyncio.to_thread(self._schedule, now)
        await asyncio.to_thread(self._stock_alerts, now)
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
        items = notify_items(self.store, notes, self.settings.notify, now)
        self.store.enqueue_notifications(items)

    def _dispatch_waiting(self, now: datetime) -> None:
        """Offer undispatched tickets to engineers again: capacity may have freed since."""
        blocked: desk.Blocked = set()
        for ticket_id in desk.waiting_ids(self.store, WAITING_PER_TICK):
            desk.retrying(self.store, partial(self._dispatch_one, ticket_id, now, blocked))

    def _dispatch_one(self, ticket_id: str, now: datetime, blocked: desk.Blocked) -> None:
        ticket = desk.dispatch_waiting_one(self.store, ticket_id, now, blocked)
        if ticket is not None:
            device = self.store.device(ticket.device_id)
            notes = ticket_notifications(
                ticket, device, "ticket.dispatched", now, self.settings.sla
            )
            self._enqueue(notes, now)

    def _escalate(self, now: datetime) -> None:
        """Escalate each due ticket in a transaction of its own, with its notifications."""
        for ticket_id in self.store.escalations_due(now):
            desk.retrying(self.store, partial(self._escalate_one, ticket_id, now))

    def _escalate_one(self, ticket_id: str, now: datetime) -> None:
        sla, store = self.settings.sla, self.store
        result = desk.escalate_one(store, ticket_id, now, sla)
        if result is not None:
            device = store.device(result.ticket.device_id)
            self._enqueue(escalation_notifications(result, device, now, sla), now)
            self.escalations += 1

    def _stock_alerts(self, now: datetime) -> None:
        """Tell the team of each part newly at its low mark (an index: low and not yet told)."""
        for stock in self.store.low_stock_unalerted(LOW_STOCK_PER_TICK):
            desk.retrying(self.store, partial(self._alert_low, stock, now))

    def _alert_low(self, stock: Stock, now: datetime) -> None:
        if self.store.mark_stock_alerted(stock.warehouse, stock.part):
            self._enqueue([low_stock_notification(stock, now)], now)

    def _schedule(self, now: datetime) -> None:
        """Open each due scheduled ticket in a transaction of its own, with its notifications."""
        for task in desk.schedule_tasks(self.store, now, self.settings.schedules):
            desk.retrying(self.store, partial(self._open_scheduled, task, now))

    def _open_scheduled(self, task: ScheduledTask, now: datetime) -> None:
        store, sla = self.store, self.settings.sla
        ticket: Ticket | None = desk.open_scheduled(
            store, task, now, self.settings.schedules, uuid.uuid4().hex
        )
        if ticket is not None:
            device = store.device(ticket.device_id)
            self._enqueue(opened_notifications(ticket, device, now, sla), now)

    def _credit(self, breach: Breach, now: datetime) -> ServiceCredit | None:
        """The service credit ``breach`` earns, kept and audited (in the scan's transaction)."""
        policy = self.settings.compensation
        if policy is None:
            return None
        ticket = self.store.ticket(breach.ticket_id)
        device = self.store.device(ticket.device_id) if ticket is not None else None
        credit = credit_for(breach, device, policy, now)
        if credit is not None and self.store.put_credit(credit):
            fields = {
                "key": credit.key,
                "clock": str(credit.clock),
                "amount_minor": credit.amount_minor,
                "currency": credit.currency,
            }
            self.store.append_audit(now, "sla", "service_credit", credit.ticket_id, fields)
        return credit

    def _scan(self, now: datetime) -> list[Breach]:
        store = self.store
        since = store.cursor(BREACH_CURSOR)
        if since is not None and since >= now:
            return []  # a clock that went back: never report a window twice
        # The first run ever has nothing to catch up on: it starts the scan here.
        found = [] if since is None else desk.breaches(store, since, now, self.settings.sla)
        credits = {b: self._credit(b, now) for b in found}
        self._enqueue((breach_notification(b, credits[b]) for b in found), now)
        store.set_cursor(BREACH_CURSOR, now)
        self.breaches += len(found)
        return found
