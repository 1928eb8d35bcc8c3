"""Bridges MQTT-reporting equipment on the site broker into the gateway's outbox.

The bridge consumes through the shared ``ConsumeLoop``: a message's readings are in the outbox
(committed) before the site broker's message is acknowledged, a message that can never be used
is dead-lettered in the outbox with its reason, and a full or failing outbox disk holds the
message for a retry. One poison message cannot stop the messages after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiomqtt

from contract import OutOfWindow, TimeWindow, equipment_readings
from contract.topics import equipment_subscription
from gateway.counters import GatewayCounters
from gateway.dead_letters import Letter
from gateway.outbox import Outbox
from gateway.source import ReadingSink
from infra.consume import ConsumeLoop, ConsumerSettings, payload_bytes
from infra.errors import StorageUnavailable
from infra.mqtt_tls import MqttTls

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SiteBrokerSettings:
    """The broker the ward's equipment publishes to."""

    host: str = "127.0.0.1"
    port: int = 1883
    site: str = "site-a"
    reconnect_backoff_s: float = 1.0
    # MQTT 3.1.1 by default: site brokers (and the demo's embedded amqtt) may not speak 5.
    mqtt_v5: bool = False
    tls: MqttTls | None = None  # None: plain TCP


class EquipmentBridge:
    """Subscribes to every equipment topic of one site and forwards decoded readings."""

    name = "equipment"

    def __init__(
        self,
        settings: SiteBrokerSettings,
        outbox: Outbox,
        counters: GatewayCounters,
        gateway_id: str,
        window: Callable[[], TimeWindow],
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.counters = counters
        self.gateway_id = gateway_id
        self.window = window
        self._sink: ReadingSink | None = None
        self.loop = ConsumeLoop(
            ConsumerSettings(
                host=settings.host,
                port=settings.port,
                # Stable: the broker queues equipment data under it while the gateway is away.
                client_id=f"vigil-bridge-{gateway_id}",
                subscription=equipment_subscription(settings.site),
                mqtt_v5=settings.mqtt_v5,
                reconnect_backoff_s=settings.reconnect_backoff_s,
                tls=settings.tls,
            ),
            self._handle,
            self._dead_letter,
            name="equipment bridge",
        )
        self.subscribed = self.loop.subscribed

    async def run(self, sink: ReadingSink) -> None:
        """Bridge forever; the consume loop reconnects after the site broker goes away."""
        self._sink = sink
        await self.loop.run()

    async def _handle(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            await self.bridge(str(message.topic), payload_bytes(message))

    async def bridge(self, topic: str, payload: bytes) -> None:
        """Decode one message into the outbox; raise ContractError if it is unusable as a whole."""
        assert self._sink is not None, "bridge() before run()"
        try:
            decoded = equipment_readings(payload, topic=topic, window=self.window())
        except OutOfWindow as exc:
            if exc.ahead and exc.device_id is not None:
                self.counters.future_skew.labels(device_id=exc.device_id).inc()
            raise
        if decoded.rejected:
            self.counters.readings_rejected.labels(reason="invalid_reading").inc(
                len(decoded.rejected)
            )
            now = time.time_ns() // 1000
            letters = [
                Letter(now, topic, f"reading {r.index}: {r.reason}", json.dumps(r.fields).encode())
                for r in decoded.rejected
            ]
            await self._outbox(lambda: self.outbox.dead_letter_many(letters))
        if decoded.readings:
            try:
                await self._sink(decoded.readings)
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"outbox: {exc}") from exc

    async def _outbox(self, write: Callable[[], object]) -> None:
        """An outbox write; a disk that is full or locked holds the message for a retry."""
        try:
            await asyncio.to_thread(write)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"outbox: {exc}") from exc

    async def _dead_letter(self, message: aiomqtt.Message, reason: str) -> None:
        self.counters.readings_rejected.labels(reason="malformed_equipment").inc()
        letter = Letter(time.time_ns() // 1000, str(message.topic), reason, payload_bytes(message))
        await self._outbox(lambda: self.outbox.dead_letter_many([letter]))
