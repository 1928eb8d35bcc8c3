"""The service worker: alerts from MQTT become dispatched tickets, and people are told.

A thin composition of three one-job parts, all on one store:

- ``AlertConsumer`` (service.alert_consumer): ``vigil/v1/alerts/+`` in a persistent QoS 1
  session on the shared consume loop; an alert is acknowledged only once its ticket committed,
  held through storage outages, dead-lettered with a reason when it can never succeed;
- ``Ticker`` (service.ticker): escalations, SLA breach scan and schedules every ``tick_s``;
- ``NotificationSender`` (service.sender): delivers the transactional outbox as signed webhooks
  and MQTT notifications, recording every attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from contract import AlertEvent
from service.alert_consumer import ALERT_SUBSCRIPTION, AlertConsumer, intake
from service.checkpoint_export import CheckpointExporter
from service.model import Ticket
from service.notifications import (
    Endpoint,
    Notification,
    NotifyConfig,
    breach_notification,
    escalation_notifications,
    mqtt_body,
    outbox_items,
    ticket_notifications,
    ticket_summary,
    wall_clock,
)
from service.notify import RetryPolicy, Sender
from service.sender import NotificationSender
from service.sla import Breach
from service.store import ServiceStore
from service.ticker import BREACH_CURSOR, Ticker
from service.worker_settings import WorkerSettings

__all__ = [
    "ALERT_SUBSCRIPTION",
    "BREACH_CURSOR",
    "Endpoint",
    "Notification",
    "NotifyConfig",
    "ServiceWorker",
    "WorkerSettings",
    "breach_notification",
    "escalation_notifications",
    "intake",
    "mqtt_body",
    "outbox_items",
    "ticket_notifications",
    "ticket_summary",
    "wall_clock",
]


class ServiceWorker:
    """``await ServiceWorker(settings, store).run()``: alerts in, tickets and notifications out."""

    def __init__(
        self,
        settings: WorkerSettings,
        store: ServiceStore,
        *,
        clock: Callable[[], datetime] = wall_clock,
        sender: Sender | None = None,
        on_ticket: Callable[[Ticket, float], None] | None = None,
        checkpoints: CheckpointExporter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.notifier = NotificationSender(settings, store, sender=sender)
        self.alerts = AlertConsumer(
            settings,
            store,
            clock=clock,
            on_ticket=on_ticket,
            on_client=self.notifier.use_client,
            on_commit=self.notifier.wake,
        )
        self.ticker = Ticker(
            settings, store, clock=clock, on_commit=self.notifier.wake, checkpoints=checkpoints
        )

    @property
    def subscribed(self) -> asyncio.Event:
        """Set while connected to the broker and subscribed to alerts."""
        return self.alerts.subscribed

    @property
    def alerts_received(self) -> int:
        """Alerts settled from the broker: committed or dead-lettered."""
        return self.alerts.alerts_received

    @property
    def alerts_rejected(self) -> int:
        """Alerts dead-lettered."""
        return self.alerts.alerts_rejected

    @property
    def tickets_opened(self) -> int:
        """Tickets opened by alerts."""
        return self.alerts.tickets_opened

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of every notification, webhook or MQTT."""
        return self.notifier.policy

    async def run(self) -> None:
        """Catch up, then take alerts, send notifications and run periodic jobs until cancelled."""
        async with self.notifier.running():
            # Clock columns of another SLA configuration are re-derived before anything reads
            # them; pending notifications of an earlier run go out first, breaches of the
            # downtime too.
            await self.ticker.guarded(self.ticker.refresh)
            await self.ticker.guarded(self.ticker.scan_breaches)
            async with asyncio.TaskGroup() as group:
                group.create_task(self.ticker.run())
                group.create_task(self.alerts.run())

    async def handle_alert(self, alert: AlertEvent, received: float | None = None) -> Ticket | None:
        """Open (or extend) the ticket for ``alert`` and queue its notifications; None if no-op."""
        return await self.alerts.handle_alert(alert, received)

    async def tick(self, now: datetime | None = None) -> None:
        """Run escalations, breach detection and schedules once, at ``now``."""
        await self.ticker.tick(now)

    async def scan_breaches(self, now: datetime | None = None) -> list[Breach]:
        """Report breaches since the persisted scan position (downtime included) up to ``now``."""
        return await self.ticker.scan_breaches(now)

    async def drain(self) -> None:
        """Wait until the outbox has nothing pending (needs ``run()`` going, and MQTT up)."""
        await self.notifier.drain()
