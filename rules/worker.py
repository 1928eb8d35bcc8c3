"""The broker-fed rules worker: batches from the uplink topic → RuleRuntime → alerts topic.

It consumes beside ingest (its own client id and session), through the shared consume loop
(``infra.consume.ConsumeLoop``): a batch is acknowledged once its alerts are stored and their
publication attempted; a batch that cannot be decoded is dead-lettered with the reason (logged
and counted here: ingest stores the dead letter of the same payload); a storage outage holds
the batch and retries it. The alerts go out on the same connection, handed to the runtime by the
loop's ``on_client`` hook. A redelivered batch is dropped by the engine as duplicates, and the
runtime's outbox publishes the stored alerts still unpublished.

Identity is bound to data as ingest binds it (ingest dead-letters what the rules skip here): a
batch must arrive on its own gateway's topic, and, with an installed base, readings of devices
not registered to that gateway's site are left out before the rules see them.

Rule state is per series, so one worker evaluates at a time: alone (SQLite), or as one replica
of several behind the lease (``rules.replica``), each subscribed to every batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt

from contract import Batch, decode_batch
from contract.topics import batch_subscription, batch_topic
from infra.consume import ConsumeLoop, ConsumerSettings, payload_bytes
from infra.errors import Poison
from infra.installed_base import InstalledBase, InstalledBaseFile
from infra.mqtt_tls import MqttTls
from rules.runtime import RuleRuntime

if TYPE_CHECKING:
    from rules.replica import Replica

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
    mqtt_v5: bool = True
    max_batches: int = 16  # batches evaluated (and their alerts stored) at once
    tls: MqttTls | None = None  # None: plain TCP (the embedded demo broker)
    installed_base_file: Path | None = None  # ingest's registry; None: any device passes

    def consumer(self) -> ConsumerSettings:
        """The consume loop's settings."""
        return ConsumerSettings(
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            subscription=batch_subscription(self.shared_group),
            mqtt_v5=self.mqtt_v5,
            session_expiry_s=self.session_expiry_s,
            reconnect_backoff_s=self.reconnect_backoff_s,
            max_group=self.max_batches,
            tls=self.tls,
        )


class RulesWorker:
    """Consumes batches with QoS 1 in a persistent session and feeds them to a RuleRuntime.

    With a ``replica``, the batches go through it: evaluated only while it holds the lease.
    """

    def __init__(
        self, settings: RulesWorkerSettings, runtime: RuleRuntime, replica: Replica | None = None
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.replica = replica
        self.loop = ConsumeLoop(
            settings.consumer(),
            self.handle,
            self.dead_letter,
            name="rules worker",
            on_client=self._on_client,
        )
        self.subscribed = self.loop.subscribed
        self.rejected = 0  # invalid readings dropped from otherwise valid batches
        self.unregistered = 0  # readings of devices the batch's gateway may not report
        self.dead_letters = 0
        path = settings.installed_base_file
        self.installed_base = None if path is None else InstalledBaseFile(path)

    async def run(self) -> None:
        """Consume forever (and keep the lease in view, as a replica)."""
        if self.replica is None:
            await self.loop.run()
            return
        async with asyncio.TaskGroup() as group:
            group.create_task(self.loop.run(), name="rules-consume")
            group.create_task(self.replica.run(), name="rules-lease")

    async def handle(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        """Decode every batch of the group, then run the rules on their valid readings.

        A ``ContractError`` (a payload that is no batch) makes the loop retry the messages one
        by one and dead-letter the bad one; ``StorageUnavailable`` holds them all.
        """
        batches: list[Batch] = []
        installed = None if self.installed_base is None else self.installed_base.current()
        for message in messages:
            decoded = decode_batch(payload_bytes(message))
            self.rejected += len(decoded.rejected)
            batch = decoded.batch
            if str(message.topic) != batch_topic(batch.gateway_id):
                raise Poison(f"batch of gateway {batch.gateway_id!r} on {message.topic}")
            batches.append(batch if installed is None else self._registered(batch, installed))
        if self.replica is not None:
            await self.replica.handle(batches)
        else:
            await self.runtime.on_stored(batches)

    def _registered(self, batch: Batch, installed: InstalledBase) -> Batch:
        """``batch`` without the readings its gateway may not report."""
        refused = {index for index, _ in installed.unregistered(batch)}
        if not refused:
            return batch
        self.unregistered += len(refused)
        kept = tuple(r for i, r in enumerate(batch.readings) if i not in refused)
        return Batch(batch.gateway_id, batch.batch_seq, kept)

    async def dead_letter(self, message: aiomqtt.Message, reason: str) -> None:
        """Count a batch the rules cannot use; ingest keeps its payload as a dead letter."""
        self.dead_letters += 1
        log.info("rules skip a batch on %s (ingest dead-letters it): %s", message.topic, reason)

    def _on_client(self, client: aiomqtt.Client | None) -> None:
        """Alerts go out on the consuming connection; setting it also flushes the outbox."""
        if self.replica is not None:
            self.replica.on_client(client)
        else:
            self.runtime.publisher = client
