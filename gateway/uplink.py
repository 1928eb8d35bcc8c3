"""Publishes outbox batches upstream with QoS 1; a batch is acknowledged only on PUBACK."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiomqtt

from contract import Batch, encode_batch
from contract.topics import alert_topic, batch_topic
from gateway.counters import GatewayCounters
from gateway.outbox import Outbox
from gateway.overflow_alert import OverflowAlarm

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """Where and how batches go upstream."""

    host: str = "127.0.0.1"
    port: int = 1883
    batch_max_readings: int = 2_000
    linger_s: float = 0.05  # wait this long for a small batch to fill
    max_inflight: int = 8
    ack_timeout_s: float = 10.0
    reconnect_backoff_s: float = 0.5
    reconnect_backoff_max_s: float = 10.0


class Uplink:
    """Drains the outbox to the broker, reconnecting and resending after any outage."""

    def __init__(
        self, outbox: Outbox, settings: UplinkSettings, counters: GatewayCounters
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.counters = counters
        self.new_data = asyncio.Event()
        self.connected = asyncio.Event()
        self.topic = batch_topic(outbox.gateway_id)
        self.alarm = OverflowAlarm(outbox)
        self.alerts_queued = asyncio.Event()

    def wake(self) -> None:
        """Tell the uplink that readings were appended."""
        self.new_data.set()

    async def check_alarm(self) -> None:
        """Queue an overflow alert transition if one is due, and have it published."""
        if await asyncio.to_thread(self.alarm.check) is not None:
            self.alerts_queued.set()

    async def run(self) -> None:
        """Forward forever; every connection failure leads to a backoff and a resend."""
        backoff = self.settings.reconnect_backoff_s
        while True:
            try:
                async with aiomqtt.Client(
                    self.settings.host,
                    self.settings.port,
                    identifier=f"vigil-gateway-{self.outbox.gateway_id}",
                    timeout=self.settings.ack_timeout_s,
                    max_inflight_messages=self.settings.max_inflight,
                ) as client:
                    self.connected.set()
                    backoff = self.settings.reconnect_backoff_s
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self.counters.uplink_reconnects.inc()
                log.warning("uplink lost (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_backoff_max_s)
            except BaseExceptionGroup as group:
                # A failed publish inside the task group: same handling as a lost connection.
                if not group.subgroup(aiomqtt.MqttError):
                    raise
                self.connected.clear()
                self.counters.uplink_reconnects.inc()
                log.warning("uplink publish failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_backoff_max_s)

    async def _pump(self, client: aiomqtt.Client) -> None:
        slots = asyncio.Semaphore(self.settings.max_inflight)
        async with asyncio.TaskGroup() as group:
            # Drops committed just before a crash still raise their alert after the restart.
            await self.check_alarm()
            self.alerts_queued.set()
            group.create_task(self._publish_alerts(client))
            # Whatever was cut before the outage goes first, with its original batch_seq.
            for batch in await asyncio.to_thread(self.outbox.open_batches):
                await slots.acquire()
                self.counters.resent_batches.inc()
                group.create_task(self._send(client, batch, slots))
            while True:
                await slots.acquire()
                batch = await self._next_batch()
                group.create_task(self._send(client, batch, slots))

    async def _next_batch(self) -> Batch:
        limit = self.settings.batch_max_readings
        while True:
            self.new_data.clear()
            batch = await asyncio.to_thread(self.outbox.next_batch, limit)
            if batch is not None:
                return batch
            await self.new_data.wait()
            # Let a trickle of readings gather into one batch instead of many tiny ones.
            await asyncio.sleep(self.settings.linger_s)

    async def _send(self, client: aiomqtt.Client, batch: Batch, slots: asyncio.Semaphore) -> None:
        try:
            await client.publish(self.topic, encode_batch(batch), qos=1)
            await asyncio.to_thread(self.outbox.acknowledge, batch.batch_seq)
            self.counters.batches_sent.inc()
            self.counters.readings_sent.inc(len(batch.readings))
            if self.alarm.active:
                await self.check_alarm()  # the backlog shrank: maybe below the clear level
        finally:
            slots.release()

    async def _publish_alerts(self, client: aiomqtt.Client) -> None:
        """Publish queued alert events in order, each forgotten only on its PUBACK."""
        topic = alert_topic(self.outbox.gateway_id)
        while True:
            await self.alerts_queued.wait()
            self.alerts_queued.clear()
            for alert_id, payload in await asyncio.to_thread(self.outbox.queued_alerts):
                await client.publish(topic, payload, qos=1)
                await asyncio.to_thread(self.outbox.alert_sent, alert_id)
                log.info("alert event %d published on %s", alert_id, topic)
