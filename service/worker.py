"""The alert → ticket worker: alerts from MQTT become dispatched tickets, and people are told.

Subscribes with QoS 1 in a persistent session to ``vigil/v1/alerts/+``, runs each alert through
the desk (dedupe, open, auto-dispatch) and acknowledges it only once the ticket is committed, so
a crash loses nothing and a redelivery changes nothing. Notifications go out as signed webhooks
(with retries) and on ``vigil/v1/notifications/<role>/<id>``; every delivery is recorded. A
periodic tick runs escalations, breach detection and schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
from pydantic import BaseModel, ConfigDict

from contract import AlertEvent, ContractError, decode_alert
from contract.topics import alert_subscription, notification_topic
from infra.mqtt_session import ack, enable_manual_ack, persistent_client
from service import desk
from service.audit import canonical_json
from service.escalation import Escalation
from service.model import Channel, Delivery, Device, OutboxItem, OutboxStatus, Ticket
from service.notify import HttpSender, RetryPolicy, Sender, Webhook, attempt, worth_retrying
from service.schedules import ScheduleConfig
from service.sla import Breach, SlaConfig, sla_status
from service.store import ServiceStore

log = logging.getLogger(__name__)

ALERT_SUBSCRIPTION = alert_subscription()
BREACH_CURSOR = "breach_scan"  # the store cursor: breaches are reported up to this instant


class Endpoint(BaseModel):
    """A webhook subscriber and the secret its signatures are made with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: str


class NotifyConfig(BaseModel):
    """Who gets webhooks: the service team, engineers, hospitals (by site), patients' carers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_team: tuple[Endpoint, ...] = ()
    engineers: dict[str, tuple[Endpoint, ...]] = {}
    sites: dict[str, tuple[Endpoint, ...]] = {}
    patients: dict[str, tuple[Endpoint, ...]] = {}
    attempts: int = 5
    backoff_s: float = 1.0
    backoff_cap_s: float = 300.0

    def endpoints(self, role: str, subject: str) -> tuple[Endpoint, ...]:
        """The webhooks of one recipient."""
        by_role = {"engineer": self.engineers, "hospital": self.sites, "patient": self.patients}
        if role == "service":
            return self.service_team
        return by_role.get(role, {}).get(subject, ())


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one recipient (``role``/``subject``, e.g. ``engineer``/``e1``)."""

    role: str
    subject: str
    event: str
    payload: Mapping[str, Any]
    occurrence: str = ""  # which time this event happened to the ticket (escalations repeat)

    @property
    def event_id(self) -> str:
        """Unique per ticket, event, occurrence and recipient; receivers dedupe on it."""
        base = f"{self.payload.get('ticket_id', '-')}:{self.event}:{self.role}:{self.subject}"
        return f"{base}:{self.occurrence}" if self.occurrence else base


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Broker connection, periodic-job interval and the policies the desk applies."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vigil-service-1"
    mqtt_v5: bool = True  # False for MQTT 3.1.1 brokers such as the embedded amqtt
    session_expiry_s: int = 24 * 3600
    reconnect_backoff_s: float = 0.5
    tick_s: float = 60.0
    outbox_poll_s: float = 1.0  # how often the sender looks for due notifications unprompted
    sla: SlaConfig = field(default_factory=SlaConfig)
    schedules: ScheduleConfig = field(default_factory=ScheduleConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)


def ticket_summary(
    ticket: Ticket, device: Device | None, now: datetime, sla: SlaConfig
) -> dict[str, Any]:
    """What the service team and engineers are told about a ticket."""
    status = sla_status(ticket, now, sla)
    return {
        "ticket_id": ticket.id,
        "device_id": ticket.device_id,
        "rule_id": ticket.rule_id,
        "kind": str(ticket.kind),
        "tier": str(ticket.tier),
        "state": str(ticket.state),
        "title": ticket.title,
        "assignee": ticket.assignee,
        "dispatch_reason": ticket.dispatch_reason,
        "opened_at": ticket.opened_at.isoformat(),
        "site_id": device.site_id if device else None,
        "respond_by": _iso(status.respond.deadline),
        "resolve_by": _iso(status.resolve.deadline),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def ticket_notifications(
    ticket: Ticket, device: Device | None, event: str, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """Who hears about ``ticket``: the team, its engineer, its hospital and its patient."""
    full = ticket_summary(ticket, device, now, sla)
    when = ticket.last_change.isoformat()
    notes = [Notification("service", "team", event, full, when)]
    if ticket.assignee:
        notes.append(Notification("engineer", ticket.assignee, event, full, when))
    if device is not None:
        brief = {k: full[k] for k in ("ticket_id", "device_id", "state", "title", "assignee")}
        notes.append(Notification("hospital", device.site_id, event, brief, when))
        if device.patient:
            # Patients and carers get what they need to act on, nothing about other people.
            notes.append(
                Notification(
                    "patient",
                    device.patient,
                    event,
                    {
                        "ticket_id": ticket.id,
                        "device_id": ticket.device_id,
                        "state": str(ticket.state),
                        "message": "A service engineer has been assigned to your kit."
                        if ticket.assignee
                        else "Your kit needs attention; the service team is informed.",
                    },
                    when,
                )
            )
    return notes


def escalation_notifications(
    result: Escalation, device: Device | None, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """The supervisor (or the desk when nobody held it) and the new engineer."""
    full = ticket_summary(result.ticket, device, now, sla) | {
        "lapsed_assignee": result.lapsed_assignee,
        "outcome": result.outcome.reason,
    }
    when = now.isoformat()
    notes = [Notification("service", "team", "ticket.escalated", full, when)]
    if result.supervisor_id:
        notes.append(Notification("engineer", result.supervisor_id, "ticket.escalated", full, when))
    if result.ticket.assignee and result.ticket.assignee != result.lapsed_assignee:
        notes.append(
            Notification("engineer", result.ticket.assignee, "ticket.dispatched", full, when)
        )
    return notes


def breach_notification(breach: Breach) -> Notification:
    """The service team hears of every SLA breach, once."""
    return Notification(
        "service",
        "team",
        "sla.breached",
        {
            "ticket_id": breach.ticket_id,
            "clock": str(breach.clock),
            "tier": str(breach.tier),
            "at": breach.at.isoformat(),
        },
        f"{breach.clock}:{breach.at.isoformat()}",
    )


def mqtt_body(note: Notification) -> bytes:
    """The MQTT body of a notification: canonical JSON of the payload plus the event name."""
    return canonical_json({"event": note.event, **note.payload})


def outbox_items(
    notes: Iterable[Notification], config: NotifyConfig, now: datetime
) -> list[OutboxItem]:
    """The outbox rows for ``notes``: one per MQTT topic and one per configured webhook."""
    items: list[OutboxItem] = []
    for note in notes:
        targets = [(Channel.MQTT, notification_topic(note.role, note.subject))]
        targets += [(Channel.WEBHOOK, e.url) for e in config.endpoints(note.role, note.subject)]
        for channel, target in targets:
            items.append(
                OutboxItem(
                    key=f"{note.event_id}|{channel}|{target}",
                    event_id=note.event_id,
                    channel=channel,
                    target=target,
                    role=note.role,
                    subject=note.subject,
                    event=note.event,
                    payload=dict(note.payload),
                    created_at=now,
                    next_at=now,
                )
            )
    return items


def wall_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class ServiceWorker:
    """``await ServiceWorker(settings, store).run()``: alerts in, tickets and notifications out.

    Notifications go through the store's outbox: they are written in the transaction that
    changes the ticket, and a sender loop delivers them (at least once, same event id on every
    try), so a crash between the commit and the send delays a notification but never loses it.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        store: ServiceStore,
        *,
        clock: Callable[[], datetime] = wall_clock,
        sender: Sender | None = None,
        on_ticket: Callable[[Ticket, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.sender = sender
        # Called with each opened ticket and the seconds from receipt to commit (bench, demo).
        self.on_ticket = on_ticket
        self.subscribed = asyncio.Event()
        self.alerts_received = 0
        self.alerts_rejected = 0
        self.tickets_opened = 0
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of every notification, webhook or MQTT."""
        c = self.settings.notify
        return RetryPolicy(c.attempts, c.backoff_s, 2.0, c.backoff_cap_s)

    def _mqtt(self) -> aiomqtt.Client:
        s = self.settings
        return persistent_client(
            s.host, s.port, s.client_id, mqtt_v5=s.mqtt_v5, session_expiry_s=s.session_expiry_s
        )

    async def run(self) -> None:
        """Catch up, then take alerts, send notifications and run periodic jobs until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            if self.sender is None:
                self.sender = await stack.enter_async_context(HttpSender())
            stack.callback(self._cancel_inflight)
            # Pending notifications of an earlier run go out first; breaches of the downtime too.
            sender = asyncio.create_task(self._send_forever())
            stack.callback(sender.cancel)
            await self.scan_breaches()
            ticker = asyncio.create_task(self._tick_forever())
            stack.callback(ticker.cancel)
            while True:
                try:
                    async with self._mqtt() as client:
                        enable_manual_ack(client)
                        await client.subscribe(ALERT_SUBSCRIPTION, qos=1)
                        self._client = client
                        self.subscribed.set()
                        self._wake.set()  # MQTT notifications held while disconnected
                        async for message in client.messages:
                            await self._on_message(message)
                            ack(client, message)
                except aiomqtt.MqttError as exc:
                    self._client = None
                    self.subscribed.clear()
                    log.warning("service worker lost the broker (%s); reconnecting", exc)
                    await asyncio.sleep(self.settings.reconnect_backoff_s)
                finally:
                    self._client = None

    async def _on_message(self, message: aiomqtt.Message) -> None:
        received = time.perf_counter()
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        )
        self.alerts_received += 1
        try:
            alert = decode_alert(payload)
        except ContractError as exc:
            self.alerts_rejected += 1
            log.warning("rejected alert on %s: %s", message.topic, exc)
            return
        await self.handle_alert(alert, received)

    async def handle_alert(self, alert: AlertEvent, received: float | None = None) -> Ticket | None:
        """Open (or extend) the ticket for ``alert`` and queue its notifications; None if no-op."""
        received = time.perf_counter() if received is None else received
        now = self.clock()
        try:
            ticket, created = await asyncio.to_thread(self._intake, alert, now)
        except Exception:
            # A poison message must not wedge the queue: it is logged and acknowledged.
            log.exception(
                "alert %s/%s could not be turned into a ticket", alert.device_id, alert.rule_id
            )
            self.alerts_rejected += 1
            return None
        if ticket is None or not created:
            return ticket
        self.tickets_opened += 1
        if self.on_ticket is not None:
            self.on_ticket(ticket, time.perf_counter() - received)
        self._wake.set()
        return ticket

    def _intake(self, alert: AlertEvent, now: datetime) -> tuple[Ticket | None, bool]:
        # The ticket, its audit entries and its notifications commit together or not at all.
        with self.store.atomic():
            ticket, created = desk.intake_alert(self.store, alert, now, self.settings.sla)
            if ticket is not None and created:
                self._enqueue(self._opened_notes(ticket, now), now)
            return ticket, created

    def _opened_notes(self, ticket: Ticket, now: datetime) -> list[Notification]:
        device = self.store.device(ticket.device_id)
        event = "ticket.dispatched" if ticket.assignee else "ticket.opened"
        return ticket_notifications(ticket, device, event, now, self.settings.sla)

    def _enqueue(self, notes: Iterable[Notification], now: datetime) -> None:
        self.store.enqueue_notifications(outbox_items(notes, self.settings.notify, now))

    async def tick(self, now: datetime | None = None) -> None:
        """Run escalations, breach detection and schedules once, at ``now``."""
        now = now or self.clock()
        await asyncio.to_thread(self._escalate, now)
        await self.scan_breaches(now)
        await asyncio.to_thread(self._schedule, now)
        self._wake.set()

    def _escalate(self, now: datetime) -> None:
        sla, store = self.settings.sla, self.store
        with store.atomic():
            for result in desk.run_escalations(store, now, sla):
                device = store.device(result.ticket.device_id)
                self._enqueue(escalation_notifications(result, device, now, sla), now)

    def _schedule(self, now: datetime) -> None:
        store = self.store
        with store.atomic():
            new_id = lambda: uuid.uuid4().hex  # noqa: E731
            for ticket in desk.run_schedules(store, now, self.settings.schedules, new_id):
                self._enqueue(self._opened_notes(ticket, now), now)

    async def scan_breaches(self, now: datetime | None = None) -> list[Breach]:
        """Report breaches since the persisted scan position (downtime included) up to ``now``."""
        found = await asyncio.to_thread(self._scan_breaches, now or self.clock())
        self._wake.set()
        return found

    def _scan_breaches(self, now: datetime) -> list[Breach]:
        store = self.store
        with store.atomic():
            since = store.cursor(BREACH_CURSOR)
            if since is not None and since >= now:
                return []  # a clock that went back: never report a window twice
            # The first run ever has nothing to catch up on: it starts the scan here.
            found = [] if since is None else desk.breaches(store, since, now, self.settings.sla)
            self._enqueue((breach_notification(b) for b in found), now)
            store.set_cursor(BREACH_CURSOR, now)
        return found

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("periodic service jobs failed; retrying next tick")

    async def drain(self) -> None:
        """Wait until the outbox has nothing pending (needs ``run()`` going, and MQTT up)."""
        while True:
            self._wake.set()
            pending = await asyncio.to_thread(self.store.pending_notifications, 1)
            if not pending and not self._inflight:
                return
            await asyncio.sleep(0.02)

    def _cancel_inflight(self) -> None:
        for task in self._inflight.values():
            task.cancel()

    async def _send_forever(self) -> None:
        poll = self.settings.outbox_poll_s
        while True:
            self._wake.clear()
            try:
                items = await asyncio.to_thread(self.store.pending_notifications, 500)
            except Exception:
                log.exception("could not read the notification outbox; retrying")
                items = []
            now = wall_clock()
            wait = poll
            for item in items:
                if item.key in self._inflight:
                    continue
                if item.channel is Channel.MQTT and self._client is None:
                    continue  # held until the broker is back (the connect wakes this loop)
                if item.next_at > now:
                    wait = min(wait, (item.next_at - now).total_seconds())
                    continue
                task = asyncio.create_task(self._attempt(item))
                self._inflight[item.key] = task
                task.add_done_callback(functools.partial(self._done, item.key))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))

    def _done(self, key: str, _: object) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    async def _attempt(self, item: OutboxItem) -> None:
        """One delivery attempt of one outbox item; record it and move the item on."""
        number = item.attempts + 1
        try:
            if item.channel is Channel.MQTT:
                delivery = await self._publish(item, number)
            else:
                delivery = await self._post(item, number)
        except Exception as exc:  # a bug here must not kill the sender loop
            log.exception("notification %s failed unexpectedly", item.key)
            delivery = Delivery(
                event_id=item.event_id,
                url=item.target,
                attempt=number,
                at=wall_clock(),
                error=f"{type(exc).__name__}: {exc}",
            )
        policy = self.policy
        if delivery.ok:
            status, next_at = OutboxStatus.DONE, item.next_at
        elif worth_retrying(delivery) and number < policy.attempts:
            status, next_at = OutboxStatus.PENDING, wall_clock() + _seconds(policy.delay(number))
        else:
            status, next_at = OutboxStatus.FAILED, item.next_at
            log.warning(
                "gave up on notification %s after %d attempts: %s", item.key, number, delivery.error
            )
        moved = item.model_copy(
            update={
                "attempts": number,
                "status": status,
                "next_at": next_at,
                "last_error": delivery.error,
            }
        )
        await asyncio.to_thread(self._settle, delivery, moved)

    def _settle(self, delivery: Delivery, item: OutboxItem) -> None:
        with self.store.atomic():
            self.store.record_delivery(delivery)
            self.store.update_notification(item)

    async def _post(self, item: OutboxItem, number: int) -> Delivery:
        endpoint = next(
            (
                e
                for e in self.settings.notify.endpoints(item.role, item.subject)
                if e.url == item.target
            ),
            None,
        )
        if endpoint is None:
            # The endpoint was removed from the configuration since: say so, do not guess.
            return Delivery(
                event_id=item.event_id,
                url=item.target,
                attempt=number,
                at=wall_clock(),
                status=None,
                ok=False,
                error="PermanentError: endpoint no longer configured",
            )
        assert self.sender is not None  # set by run(), or given
        # Signatures carry real time whatever clock the desk runs on: receivers check it.
        return await attempt(
            Webhook(endpoint.url, endpoint.secret.encode()),
            item.event_id,
            item.event,
            item.payload,
            number,
            send=self.sender,
            clock=wall_clock,
        )

    async def _publish(self, item: OutboxItem, number: int) -> Delivery:
        s = self.settings
        body = mqtt_body(Notification(item.role, item.subject, item.event, item.payload))
        at, error = wall_clock(), ""
        client = self._client
        try:
            if client is None:
                raise aiomqtt.MqttError("not connected")
            await client.publish(item.target, body, qos=1)  # returns once the broker PUBACKs
        except aiomqtt.MqttError as exc:
            error = f"MqttError: {exc}"
        return Delivery(
            event_id=item.event_id,
            url=f"mqtt://{s.host}:{s.port}/{item.target}",
            attempt=number,
            at=at,
            ok=not error,
            error=error,
        )


def _seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
