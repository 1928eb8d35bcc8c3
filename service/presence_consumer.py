"""Gateway and equipment presence, and gateway health, from the uplink broker into the store.

Three loops on the shared ``ConsumeLoop`` (each message committed, held through a store outage,
or dead-lettered with its reason):

- ``vigil/v1/gateways/+/status/#``: retained online/offline statuses (a gateway's own, and the
  equipment statuses it relays); a transition that calls for it publishes a ``presence.offline``
  alert (raised or cleared) on the alerts topic, where the service worker turns it into a ticket;
- ``vigil/v1/gateways/+/health``: the gateways' retained health summaries, newest kept;
- ``vigil/v1/gateways/+/devices/+/info``: what a device says it is (BLE Device Information),
  reconciled with the installed base: a new firmware revision is recorded on the device
  (audited); a model or serial that contradicts it is audited and raises
  ``device.info_mismatch``.

The alert is published before the presence commit: a crash in between repeats the alert on
redelivery (the desk appends the repeat to the same ticket) rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt

from contract.health import decode_health
from contract.presence import (
    DeviceInfoReport,
    PresenceKind,
    decode_device_info,
    decode_presence,
    device_info_subscription,
    gateway_from_health_topic,
    health_subscription,
    parse_device_info_topic,
    parse_status_topic,
    status_subscription,
)
from contract.topics import alert_topic
from infra.consume import ConsumeLoop, ConsumerSettings, payload_bytes
from infra.errors import Poison
from infra.time_us import now_us
from service import desk
from service.model import DeadLetter, Device
from service.notifications import wall_clock
from service.presence import (
    apply_status,
    firmware_update,
    info_mismatches,
    is_stale,
    mismatch_alert,
)
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PresenceSeen:
    """What one status message did (for tests and logs)."""

    subject_id: str
    state: str
    alert: str | None


def consumer_settings(settings: WorkerSettings, suffix: str, subscription: str) -> ConsumerSettings:
    """The worker's broker settings for one more MQTT 5 subscription under its own client id."""
    s = settings
    return ConsumerSettings(
        host=s.host,
        port=s.port,
        client_id=f"{s.client_id}-{suffix}",
        subscription=subscription,
        mqtt_v5=True,
        session_expiry_s=s.session_expiry_s,
        reconnect_backoff_s=s.reconnect_backoff_s,
        retry_backoff_s=s.retry_backoff_s,
        retry_backoff_max_s=s.retry_backoff_max_s,
        tls=s.tls,
    )


class ServiceDeadLetters:
    """Dead-letters a message in the service store (held while the store is down)."""

    def __init__(self, store: ServiceStore) -> None:
        self.store = store

    async def __call__(self, message: aiomqtt.Message, reason: str) -> None:
        """Keep ``message`` with ``reason``."""
        letter = DeadLetter(
            received_at=wall_clock(),
            topic=str(message.topic),
            reason=reason,
            payload=payload_bytes(message),
        )
        await asyncio.to_thread(self.store.dead_letter, letter)


class PresenceConsumer:
    """``await PresenceConsumer(settings, store).run()``: statuses and health until cancelled."""

    def __init__(self, settings: WorkerSettings, store: ServiceStore) -> None:
        self.store = store
        self.seen: list[PresenceSeen] = []
        dead = ServiceDeadLetters(store)
        self.status_loop = ConsumeLoop(
            consumer_settings(settings, "presence", status_subscription()),
            self._statuses,
            dead,
            name="presence consumer",
        )
        self.info_loop = ConsumeLoop(
            consumer_settings(settings, "device-info", device_info_subscription()),
            self._infos,
            dead,
            name="device info consumer",
        )
        self.health_loop = ConsumeLoop(
            consumer_settings(settings, "health", health_subscription()),
            self._health,
            dead,
            name="health consumer",
        )

    async def run(self) -> None:
        """Consume both subscriptions until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.status_loop.run())
            group.create_task(self.health_loop.run())
            group.create_task(self.info_loop.run())

    async def _statuses(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            await self.status(client, str(message.topic), payload_bytes(message))

    async def status(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """Handle one status message; Poison/ContractError when it is not a usable one."""
        gateway_id, device_id = parse_status_topic(topic)
        if not payload:
            return  # a retained status cleared by an operator: nothing to record
        status = decode_presence(payload)
        expected = (
            (PresenceKind.GATEWAY, gateway_id)
            if device_id is None
            else (PresenceKind.EQUIPMENT, device_id)
        )
        if (status.kind, status.id) != expected:
            raise Poison(f"status of {status.kind} {status.id!r} on {topic}")
        previous = await asyncio.to_thread(self.store.presence, status.id)
        if is_stale(previous, status):
            return
        record, alert = apply_status(previous, status, gateway_id, now_us())
        if alert is not None:
            await client.publish(alert_topic(alert.device_id), alert.encode(), qos=1)
            log.warning("presence: %s %s", alert.transition, alert.message)
        await asyncio.to_thread(self.store.put_presence, record)
        self.seen.append(
            PresenceSeen(
                record.subject_id, str(record.state), None if alert is None else alert.transition
            )
        )

    async def _infos(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            await self.device_info(client, str(message.topic), payload_bytes(message))

    async def device_info(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """Reconcile one Device Information report with the installed base."""
        gateway_id, device_id = parse_device_info_topic(topic)
        if not payload:
            return
        report = decode_device_info(payload)
        if (report.gateway_id, report.device_id) != (gateway_id, device_id):
            raise Poison(f"report of {report.gateway_id}/{report.device_id} on {topic}")
        device = await asyncio.to_thread(self.store.device, device_id)
        if device is None:
            raise Poison(f"device {device_id!r} is not in the installed base")
        found = info_mismatches(device, report)
        if found:
            alert = mismatch_alert(report, found)
            await client.publish(alert_topic(device_id), alert.encode(), qos=1)
            log.warning("device info mismatch: %s", alert.message)
        await asyncio.to_thread(self._reconcile, device, report, found)

    def _reconcile(
        self, device: Device, report: DeviceInfoReport, found: dict[str, dict[str, str]]
    ) -> None:
        at = datetime.fromtimestamp(report.at_us / 1e6, UTC)
        actor = f"gateway:{report.gateway_id}"
        with self.store.atomic():
            if found:
                data = {"mismatch": found, "hardware_revision": report.hardware_revision}
                self.store.append_audit(at, actor, "device_info_mismatch", device.id, data)
            elif (updated := firmware_update(device, report)) is not None:
                desk.put_installed(self.store, updated, actor, at)

    async def _health(self, _: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            gateway_id = gateway_from_health_topic(str(message.topic))
            payload = payload_bytes(message)
            if not payload:
                continue
            health = decode_health(payload)
            if health.gateway_id != gateway_id:
                raise Poison(f"health of {health.gateway_id!r} on {gateway_id}'s topic")
            await asyncio.to_thread(self.store.put_gateway_health, health)
