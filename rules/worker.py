"""The broker-fed rules worker: batches from the uplink topic → RuleRuntime → alerts topic.

It subscribes beside ingest (its own client id and shared group), so rules keep running when
ingest is busy or down. Rule state is per series, so run one active worker per group; a second
member of the same shared group would see only part of each series.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiomqtt

from contract import ContractError, decode_batch
from contract.topics import batch_subscription
from infra.mqtt_session import ack, enable_manual_ack, persistent_client
from rules.runtime import RuleRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RulesWorkerSettings:
    """Broker connection of the rules worker."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vigil-rules-1"
    shared_group: str | None = "rules"
    session_expiry_s: int = 24 * 3600
    reconnect_backoff_s: float = 0.5


class RulesWorker:
    """Consumes batches with QoS 1 in a persistent session and feeds them to a RuleRuntime.

    A batch is acknowledged after its alerts are stored and their publication attempted, so a
    crash in between means redelivery; the engine then drops the repeated readings as
    duplicates, and the runtime's outbox publishes the stored alerts still unpublished.
    """

    def __init__(self, settings: RulesWorkerSettings, runtime: RuleRuntime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.subscribed = asyncio.Event()
        self.rejected = 0

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return persistent_client(s.host, s.port, s.client_id, session_expiry_s=s.session_expiry_s)

    async def run(self) -> None:
        """Consume forever, reconnecting after broker outages."""
        while True:
            try:
                async with self._client() as client:
                    enable_manual_ack(client)
                    # The same connection publishes the alerts; setting it also sends those
                    # left unpublished by an outage or an earlier process.
                    self.runtime.publisher = client
                    await client.subscribe(batch_subscription(self.settings.shared_group), qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        await self.handle(message)
                        ack(client, message)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                self.runtime.publisher = None
                log.warning("rules worker lost the broker (%s); reconnecting", exc)
                await asyncio.sleep(self.settings.reconnect_backoff_s)

    async def handle(self, message: aiomqtt.Message) -> None:
        """Decode one batch message and run the rules on its valid readings."""
        payload = (
            message.payload
            if isinstance(message.payload, bytes)
            else (str(message.payload).encode())
        )
        try:
            decoded = decode_batch(payload)
        except ContractError as exc:
            # Ingest dead-letters it; here it only cannot raise alerts.
            self.rejected += 1
            log.warning("rules worker skipped a bad batch on %s: %s", message.topic, exc)
            return
        await self.runtime.on_stored([decoded.batch])
