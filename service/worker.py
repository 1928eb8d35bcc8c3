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
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from pydantic import BaseModel, ConfigDict

from contract import AlertEvent, ContractError, decode_alert
from contract.topics import alert_subscription, notification_topic
from ingest.mqtt_session import ack, enable_manual_ack, persistent_client
from service import desk
from service.audit import canonical_json
from service.escalation import Escalation
from service.model import Delivery, Device, Ticket
from service.notify import HttpSender, RetryPolicy, Sender, Webhook, deliver
from service.schedules import ScheduleConfig
from service.sla import Breach, SlaConfig, sla_status
from service.store import ServiceStore

log = logging.getLogger(__name__)

ALERT_SUBSCRIPTION = alert_subscription()


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

    @property
    def event_id(self) -> str:
        """Unique per ticket, event and recipient; the key deliveries are recorded under."""
        return f"{self.payload.get('ticket_id', '-')}:{self.event}:{self.role}:{self.subject}"


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
    sla: SlaConfig = field(default_factory=SlaConfig)
    schedules: ScheduleConfig = field(default_factory=ScheduleConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)


def ticket_summary(
    ticket: Ticket, device: Device | None, now: datetime, sla: SlaConfig
) -> dict[str, Any]:
    """What the service team and engineers are told about a ticket."""
    status = sla_status(ticket, now, sla)
    return {
        "ticket_id": ticket.id, "device_id": ticket.device_id, "rule_id": ticket.rule_id,
        "kind": str(ticket.kind), "tier": str(ticket.tier), "state": str(ticket.state),
        "title": ticket.title, "assignee": ticket.assignee,
        "dispatch_reason": ticket.dispatch_reason, "opened_at": ticket.opened_at.isoformat(),
        "site_id": device.site_id if device else None,
        "respond_by": _iso(status.respond.deadline), "resolve_by": _iso(status.resolve.deadline),
    }  # fmt: skip


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def ticket_notifications(
    ticket: Ticket, device: Device | None, event: str, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """Who hears about ``ticket``: the team, its engineer, its hospital and its patient."""
    full = ticket_summary(ticket, device, now, sla)
    notes = [Notification("service", "team", event, full)]
    if ticket.assignee:
        notes.append(Notification("engineer", ticket.assignee, event, full))
    if device is not None:
        brief = {k: full[k] for k in ("ticket_id", "device_id", "state", "title", "assignee")}
        notes.append(Notification("hospital", device.site_id, event, brief))
        if device.patient:
            # Patients and carers get what they need to act on, nothing about other people.
            notes.append(Notification("patient", device.patient, event, {
                "ticket_id": ticket.id, "device_id": ticket.device_id, "state": str(ticket.state),
                "message": "A service engineer has been assigned to your kit."
                if ticket.assignee else "Your kit needs attention; the service team is informed.",
            }))  # fmt: skip
    return notes


def escalation_notifications(
    result: Escalation, device: Device | None, now: datetime, sla: SlaConfig
) -> list[Notification]:
    """The supervisor (or the desk when nobody held it) and the new engineer."""
    full = ticket_summary(result.ticket, device, now, sla) | {
        "lapsed_assignee": result.lapsed_assignee, "outcome": result.outcome.reason,
    }  # fmt: skip
    notes = [Notification("service", "team", "ticket.escalated", full)]
    if result.supervisor_id:
        notes.append(Notification("engineer", result.supervisor_id, "ticket.escalated", full))
    if result.ticket.assignee and result.ticket.assignee != result.lapsed_assignee:
        notes.append(Notification("engineer", result.ticket.assignee, "ticket.dispatched", full))
    return notes


def breach_notification(breach: Breach) -> Notification:
    """The service team hears of every SLA breach, once."""
    return Notification("service", "team", "sla.breached", {
        "ticket_id": breach.ticket_id, "clock": str(breach.clock), "tier": str(breach.tier),
        "at": breach.at.isoformat(),
    })  # fmt: skip


def mqtt_body(note: Notification) -> bytes:
    """The MQTT body of a notification: canonical JSON of the payload plus the event name."""
    return canonical_json({"event": note.event, **note.payload})


def wall_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


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
        self._pending: set[asyncio.Task[None]] = set()
        self._last_breach_scan: datetime | None = None

    def _mqtt(self) -> aiomqtt.Client:
        s = self.settings
        return persistent_client(s.host, s.port, s.client_id, mqtt_v5=s.mqtt_v5,
                                 session_expiry_s=s.session_expiry_s)

    async def run(self) -> None:
        """Consume alerts and run the periodic jobs until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            if self.sender is None:
                self.sender = await stack.enter_async_context(HttpSender())
            ticker = asyncio.create_task(self._tick_forever())
            stack.callback(ticker.cancel)
            while True:
                try:
                    async with self._mqtt() as client:
                        enable_manual_ack(client)
                        await client.subscribe(ALERT_SUBSCRIPTION, qos=1)
                        self._client = client
                        self.subscribed.set()
                        async for message in client.messages:
                            await self._on_message(message)
                            ack(client, message)
                except aiomqtt.MqttError as exc:
                    self._client = None
                    self.subscribed.clear()
                    log.warning("service worker lost the broker (%s); reconnecting", exc)
                    await asyncio.sleep(self.settings.reconnect_backoff_s)

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
        """Open (or extend) the ticket for ``alert`` and notify; None when nothing changed."""
        received = time.perf_counter() if received is None else received
        now = self.clock()
        try:
            ticket, created = await asyncio.to_thread(
                desk.intake_alert, self.store, alert, now, self.settings.sla
            )
        except Exception:
            # A poison message must not wedge the queue: it is logged and acknowledged.
            log.exception("alert %s/%s could not be turned into a ticket", alert.device_id,
                          alert.rule_id)  # fmt: skip
            self.alerts_rejected += 1
            return None
        if ticket is None or not created:
            return ticket
        self.tickets_opened += 1
        if self.on_ticket is not None:
            self.on_ticket(ticket, time.perf_counter() - received)
        device = await asyncio.to_thread(self.store.device, ticket.device_id)
        event = "ticket.dispatched" if ticket.assignee else "ticket.opened"
        self.notify(ticket_notifications(ticket, device, event, now, self.settings.sla))
        return ticket

    async def tick(self, now: datetime | None = None) -> None:
        """Run escalations, breach detection and schedules once, at ``now``."""
        now = now or self.clock()
        sla, store = self.settings.sla, self.store
        escalated = await asyncio.to_thread(desk.run_escalations, store, now, sla)
        for result in escalated:
            device = await asyncio.to_thread(store.device, result.ticket.device_id)
            self.notify(escalation_notifications(result, device, now, sla))
        since = self._last_breach_scan or now
        breaches = await asyncio.to_thread(desk.breaches, store, since, now, sla)
        self._last_breach_scan = now
        self.notify(breach_notification(b) for b in breaches)
        opened = await asyncio.to_thread(
            desk.run_schedules, store, now, self.settings.schedules, lambda: uuid.uuid4().hex
        )
        for ticket in opened:
            device = await asyncio.to_thread(store.device, ticket.device_id)
            event = "ticket.dispatched" if ticket.assignee else "ticket.opened"
            self.notify(ticket_notifications(ticket, device, event, now, sla))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("periodic service jobs failed; retrying next tick")

    def notify(self, notes: Iterable[Notification]) -> None:
        """Send each notification in the background (webhooks retry; alerts keep flowing)."""
        for note in notes:
            task = asyncio.create_task(self._send(note))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait until every notification sent so far is delivered or given up."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _send(self, note: Notification) -> None:
        await self._publish(note)
        config = self.settings.notify
        policy = RetryPolicy(config.attempts, config.backoff_s, 2.0, config.backoff_cap_s)
        assert self.sender is not None  # set by run(), or given
        for endpoint in config.endpoints(note.role, note.subject):
            # Signatures carry real time whatever clock the desk runs on: receivers check it.
            await deliver(
                Webhook(endpoint.url, endpoint.secret.encode()), note.event_id, note.event,
                note.payload, send=self.sender, record=self.store.record_delivery,
                clock=wall_clock, policy=policy,
            )  # fmt: skip

    async def _publish(self, note: Notification) -> None:
        topic = notification_topic(note.role, note.subject)
        s = self.settings
        body = mqtt_body(note)
        status, error = None, ""
        client = self._client
        try:
            if client is None:
                raise aiomqtt.MqttError("not connected")
            await client.publish(topic, body, qos=1)
        except aiomqtt.MqttError as exc:
            error = f"MqttError: {exc}"
        self.store.record_delivery(Delivery(
            event_id=note.event_id, url=f"mqtt://{s.host}:{s.port}/{topic}", attempt=1,
            at=wall_clock(), status=status, ok=not error, error=error,
        ))  # fmt: skip
