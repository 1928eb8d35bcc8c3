"""Alerts in, tickets out: the service worker's consumer of ``vigil/v1/alerts/+``.

Runs on the shared ``infra.consume.ConsumeLoop``, so each alert ends one of three ways:

- its ticket change (ticket, audit entries, outbox rows) commits, and then it is acknowledged;
- the store is unavailable (PostgreSQL down, SQLite locked): it is held unacknowledged and
  retried with back-off until it commits — nothing is dropped meanwhile;
- it is malformed, or handling it hits a bug: it is dead-lettered in the service store with the
  reason, acknowledged, and the next alert goes on.

Alerts that queued up while a commit was in flight are committed together in the next
transaction (group commit, at most ``alert_group_max``): one WAL flush for all of them, each
acknowledged only after that commit. A group that fails on one alert's bug rolls back whole and
the loop settles its alerts one at a time.

A redelivered alert (after a crash or a lost broker) finds its evidence on a ticket already and
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import aiomqtt

from contract import AlertEvent, decode_alert
from contract.topics import alert_subscription, alert_topic
from infra.consume import ClientHook, ConsumeLoop, ConsumerSettings, payload_bytes
from infra.errors import InfrastructureUnavailable, Poison
from service import desk
from service.concurrency import ConcurrentUpdate
from service.model import DeadLetter, Ticket
from service.notifications import opened_notifications, wall_clock
from service.quiet_hours import notify_items
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)

ALERT_SUBSCRIPTION = alert_subscription()


class TicketContended(InfrastructureUnavailable):
    """The ticket kept changing under every retry: hold the alert and try it again later.

    Contention is not bad data — the same alert commits once the other writer is done — so the
    alert is held like in an outage rather than dead-lettered.
    """


def parse_alert(message: aiomqtt.Message) -> AlertEvent:
    """The alert a message carries; ContractError or Poison when it is not a usable one."""
    alert = decode_alert(payload_bytes(message))
    expected = alert_topic(alert.device_id)
    if str(message.topic) != expected:
        raise Poison(f"alert about {alert.device_id} arrived on {message.topic}, not {expected}")
    return alert


def intake(
    store: ServiceStore, alert: AlertEvent, now: datetime, settings: WorkerSettings
) -> tuple[Ticket | None, bool]:
    """Commit ``alert``'s ticket change with its notifications: (ticket or None, opened now)."""
    return intake_all(store, [alert], now, settings)[0]


def intake_all(
    store: ServiceStore, alerts: Sequence[AlertEvent], now: datetime, settings: WorkerSettings
) -> list[tuple[Ticket | None, bool]]:
    """Commit the ticket changes of ``alerts`` in one transaction (group commit), in order.

    Alerts that arrived together pay one commit — one WAL flush — instead of one each; each is
    still acknowledged only once this returns. The devices are locked up front in one sorted
    order, so two workers committing overlapping groups wait for each other, never deadlock.
    """

    def change() -> list[tuple[Ticket | None, bool]]:
        devices = sorted({alert.device_id for alert in alerts})
        for device_id in devices if len(devices) > 1 else ():  # one: intake locks it itself
            store.lock_device(device_id)
        return [_change(store, alert, now, settings) for alert in alerts]

    try:
        return desk.retrying(store, change)
    except ConcurrentUpdate as exc:
        which = ", ".join(sorted({f"{a.device_id}/{a.rule_id}" for a in alerts}))
        raise TicketContended(f"tickets of {which}: {exc}") from exc


def _change(
    store: ServiceStore, alert: AlertEvent, now: datetime, settings: WorkerSettings
) -> tuple[Ticket | None, bool]:
    """One alert's ticket change and its notifications, inside the caller's transaction."""
    ticket, created = desk.intake_alert(store, alert, now, settings.sla)
    if ticket is not None and created:
        notes = opened_notifications(ticket, store.device(ticket.device_id), now, settings.sla)
        store.enqueue_notifications(notify_items(store, notes, settings.notify, now))
    return ticket, created


class AlertConsumer:
    """``await AlertConsumer(settings, store).run()`` turns alerts into tickets until cancelled."""

    def __init__(
        self,
        settings: WorkerSettings,
        store: ServiceStore,
        *,
        clock: Callable[[], datetime] = wall_clock,
        on_ticket: Callable[[Ticket, float], None] | None = None,
        on_client: ClientHook | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        # Called with each opened ticket and the seconds from receipt to commit (bench, demo).
        self.on_ticket = on_ticket
        self.on_commit = on_commit  # told after each commit that queued notifications
        self.tickets_opened = 0
        s = settings
        self.loop = ConsumeLoop(
            ConsumerSettings(
                host=s.host,
                port=s.port,
                client_id=s.client_id,
                subscription=ALERT_SUBSCRIPTION,
                mqtt_v5=s.mqtt_v5,
                session_expiry_s=s.session_expiry_s,
                reconnect_backoff_s=s.reconnect_backoff_s,
                retry_backoff_s=s.retry_backoff_s,
                retry_backoff_max_s=s.retry_backoff_max_s,
                tls=s.tls,
                max_group=s.alert_group_max,
            ),
            self._handle,
            self._dead_letter,
            name="service worker",
            on_client=on_client,
        )

    @property
    def subscribed(self) -> asyncio.Event:
        """Set while connected and subscribed."""
        return self.loop.subscribed

    @property
    def alerts_received(self) -> int:
        """Alerts settled from the broker: committed or dead-lettered."""
        return self.loop.committed + self.loop.dead_lettered

    @property
    def alerts_rejected(self) -> int:
        """Alerts dead-lettered (malformed, or their handling failed)."""
        return self.loop.dead_lettered

    async def run(self) -> None:
        """Consume alerts forever, reconnecting after broker outages."""
        await self.loop.run()

    async def _handle(self, _: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        # A malformed one raises here: the loop retries the group one message at a time.
        alerts = [parse_alert(message) for message in messages]
        await self.handle_alerts(alerts, time.perf_counter())

    async def _dead_letter(self, message: aiomqtt.Message, reason: str) -> None:
        letter = DeadLetter(
            received_at=wall_clock(),
            topic=str(message.topic),
            reason=reason,
            payload=payload_bytes(message),
        )
        # Raises StorageUnavailable while the store is down: the loop holds the message.
        await asyncio.to_thread(self.store.dead_letter, letter)

    async def handle_alert(self, alert: AlertEvent, received: float | None = None) -> Ticket | None:
        """Open (or extend) the ticket for ``alert`` and queue its notifications; None if no-op.

        Raises StorageUnavailable when the store is out of reach: nothing was committed.
        """
        return (await self.handle_alerts([alert], received))[0]

    async def handle_alerts(
        self, alerts: Sequence[AlertEvent], received: float | None = None
    ) -> list[Ticket | None]:
        """``handle_alert`` for each of ``alerts``, all committed in one transaction.

        Raises StorageUnavailable when the store is out of reach: nothing was committed.
        """
        received = time.perf_counter() if received is None else received
        changes = await asyncio.to_thread(
            intake_all, self.store, alerts, self.clock(), self.settings
        )
        opened = [ticket for ticket, created in changes if ticket is not None and created]
        self.tickets_opened += len(opened)
        if opened and self.on_commit is not None:
            self.on_commit()
        for ticket in opened:
            self._observe(ticket, time.perf_counter() - received)
        return [ticket for ticket, _ in changes]

    def _observe(self, ticket: Ticket, seconds: float) -> None:
        if self.on_ticket is None:
            return
        try:
            self.on_ticket(ticket, seconds)
        except Exception:  # the ticket is committed: a failing observer must not undo that
            log.exception("on_ticket callback failed for ticket %s", ticket.id)
