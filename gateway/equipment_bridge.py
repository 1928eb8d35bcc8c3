"""Bridges MQTT-reporting equipment on the site broker into the gateway's outbox."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiomqtt

from contract import METRICS, ContractError, Reading, decode_equipment_message
from contract.topics import equipment_subscription
from gateway.counters import GatewayCounters
from gateway.outbox import Outbox
from gateway.source import ReadingSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SiteBrokerSettings:
    """The broker the ward's equipment publishes to."""

    host: str = "127.0.0.1"
    port: int = 1883
    site: str = "site-a"
    reconnect_backoff_s: float = 1.0


def equipment_readings(payload: bytes) -> list[Reading]:
    """Decode one equipment message into readings; ContractError if it is unusable."""
    message = decode_equipment_message(payload)
    readings = []
    for metric, value in message.metrics.items():
        spec = METRICS.get(metric)
        if spec is None:
            raise ContractError(f"equipment {message.device_id}: unknown metric {metric!r}")
        readings.append(
            Reading(message.device_id, metric, value, spec.unit, message.ts_us, message.seq)
        )
    return readings


class EquipmentBridge:
    """Subscribes to every equipment topic of one site and forwards decoded readings."""

    name = "equipment"

    def __init__(
        self,
        settings: SiteBrokerSettings,
        outbox: Outbox,
        counters: GatewayCounters,
        gateway_id: str,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.counters = counters
        self.gateway_id = gateway_id
        self.subscribed = asyncio.Event()

    async def run(self, sink: ReadingSink) -> None:
        """Bridge forever, resubscribing after the site broker goes away."""
        while True:
            try:
                async with aiomqtt.Client(
                    self.settings.host,
                    self.settings.port,
                    identifier=f"vigil-bridge-{self.gateway_id}",
                    clean_session=False,  # the broker queues equipment data while we are away
                ) as client:
                    await client.subscribe(equipment_subscription(self.settings.site), qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        await self._handle(
                            str(message.topic), _payload_bytes(message.payload), sink
                        )
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                log.warning("site broker lost (%s); resubscribing", exc)
                await asyncio.sleep(self.settings.reconnect_backoff_s)

    async def _handle(self, topic: str, payload: bytes, sink: ReadingSink) -> None:
        try:
            readings = equipment_readings(payload)
        except ContractError as exc:
            self.counters.readings_rejected.labels(reason="malformed_equipment").inc()
            await asyncio.to_thread(
                self.outbox.dead_letter, time.time_ns() // 1000, topic, str(exc), payload
            )
            return
        await sink(readings)


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()
