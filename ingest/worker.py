"""The ingest worker: broker → validate → storage, acknowledging only what is committed.

After each commit it confirms the stored batch_seqs to their gateways (QoS 1, on
``confirm_topic``), duplicates and fully dead-lettered batches included: a gateway forgets a
batch only on that confirmation, never on the broker's PUBACK, which can precede the broker's
own persistence. A confirmation lost with a broker is harmless: the gateway resends the batch,
storage deduplicates it, and it is confirmed again.

Storage outages (``StorageUnavailable``: PostgreSQL restarting, failing over, unreachable) are
waited out in place: the worker keeps its MQTT connection and the group of messages in hand,
acks none of them, and retries the same write with exponential backoff (``storage_backoff_s``
doubling up to ``storage_backoff_max_s``) until it commits. It takes no new group meanwhile;
the broker stops sending once its in-flight window of unacked messages is full and queues the
rest in the persistent session. Should the broker connection drop during the outage, ``run``
reconnects as after any broker loss and the broker redelivers the unacked messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt

from contract import Batch, Confirmation, ContractError, decode_batch, encode_confirmation
from contract.confirm import split_confirmation
from contract.topics import batch_subscription, confirm_topic
from infra.errors import StorageUnavailable
from infra.mqtt_session import ack, enable_manual_ack, persistent_client
from infra.telemetry.base import DeadLetter, ReadingStore
from ingest.counters import IngestCounters

log = logging.getLogger(__name__)

# Called with what was just committed, e.g. to feed the rule engine in process.
StoredHook = Callable[[Sequence[Batch]], Awaitable[None]]
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Broker connection and write batching for one worker."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vigil-ingest-1"
    shared_group: str | None = None  # set → MQTT v5 shared subscription $share/<group>/…
    mqtt_v5: bool = True
    session_expiry_s: int = 24 * 3600
    max_messages_per_write: int = 32
    reconnect_backoff_s: float = 0.5
    confirm: bool = True  # publish delivery confirmations for gateways to forget their batches
    storage_backoff_s: float = 0.2  # first wait before retrying a write storage could not take
    storage_backoff_max_s: float = 10.0  # the wait doubles per retry up to this


class IngestWorker:
    """Consumes batches with QoS 1 in a persistent session and stores them idempotently."""

    def __init__(
        self,
        settings: IngestSettings,
        store: ReadingStore,
        counters: IngestCounters | None = None,
        on_stored: StoredHook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counters = counters or IngestCounters()
        self.on_stored = on_stored
        self.subscribed = asyncio.Event()
        self._outage_since: float | None = None  # monotonic time storage became unreachable

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return persistent_client(
            s.host, s.port, s.client_id, mqtt_v5=s.mqtt_v5, session_expiry_s=s.session_expiry_s
        )

    async def run(self) -> None:
        """Consume forever, reconnecting after broker outages."""
        while True:
            try:
                async with self._client() as client:
                    enable_manual_ack(client)
                    await client.subscribe(batch_subscription(self.settings.shared_group), qos=1)
                    self.subscribed.set()
                    await self._consume(client)
            except* aiomqtt.MqttError as group:
                # Raised bare by connect/subscribe, or wrapped by the consume task group.
                self.subscribed.clear()
                log.warning("ingest lost the broker (%s); reconnecting", group.exceptions[0])
                await asyncio.sleep(self.settings.reconnect_backoff_s)

    async def _consume(self, client: aiomqtt.Client) -> None:
        queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(
            maxsize=4 * self.settings.max_messages_per_write
        )

        async def receive() -> None:
            async for message in client.messages:
                await queue.put(message)

        async with asyncio.TaskGroup() as group:
            group.create_task(receive())
            while True:
                messages = [await queue.get()]
                # Whatever queued up meanwhile goes into the same transaction.
                while len(messages) < self.settings.max_messages_per_write and not queue.empty():
                    messages.append(queue.get_nowait())
                confirmations = await self.handle(messages)
                # Awaited before the acks: unacked, a lost confirmation's batches are
                # redelivered and confirmed again (the gateway would also resend them).
                await self.confirm(client, confirmations)
                for message in messages:
                    ack(client, message)

    async def confirm(self, client: aiomqtt.Client, confirmations: Sequence[Confirmation]) -> None:
        """Publish committed batch_seqs to each gateway's confirm topic, QoS 1."""
        if not self.settings.confirm or not confirmations:
            return
        pieces = [p for c in confirmations for p in split_confirmation(c)]
        await asyncio.gather(
            *(
                client.publish(confirm_topic(p.gateway_id), encode_confirmation(p), qos=1)
                for p in pieces
            )
        )
        self.counters.confirmations_sent.inc(len(pieces))
        self.counters.batches_confirmed.inc(sum(len(p.batch_seqs) for p in pieces))

    async def handle(self, messages: Sequence[aiomqtt.Message]) -> list[Confirmation]:
        """Decode, store and dead-letter one group, waiting out storage outages; what to confirm."""
        batches, letters = self._decode(messages)
        if letters:
            # A connection lost during this COMMIT may leave it stored; the retry then appends
            # the letters twice, as a redelivery after a crash would: harmless for diagnostics.
            await self._until_stored(lambda: self.store.store_dead_letters(letters))
        if batches:
            outcome = await self._until_stored(lambda: self.store.store_batches(batches))
            self.counters.batches_new.inc(outcome.batches_new)
            self.counters.batches_duplicate.inc(outcome.batches_duplicate)
            self.counters.readings_stored.inc(outcome.readings_inserted)
        if self.on_stored is not None and batches:
            try:
                await self.on_stored(batches)
            except StorageUnavailable as exc:
                # The readings are committed and must be confirmed and acked regardless;
                # holding them for the hook would re-feed it batches it has already seen.
                self.counters.hook_storage_failures.inc()
                log.warning("on_stored hook failed on unreachable storage: %s", exc)
        # Committed now: new, already stored, or every reading dead-lettered, all are final.
        # A payload that did not decode names no batch: there is nothing to confirm.
        seqs: dict[str, list[int]] = {}
        for batch in batches:
            seqs.setdefault(batch.gateway_id, []).append(batch.batch_seq)
        return [Confirmation.of(gateway, batch_seqs) for gateway, batch_seqs in seqs.items()]

    def _decode(self, messages: Sequence[aiomqtt.Message]) -> tuple[list[Batch], list[DeadLetter]]:
        """The batches in ``messages`` and dead letters for what is unusable, counted once."""
        batches: list[Batch] = []
        letters: list[DeadLetter] = []
        now_us = time.time_ns() // 1000
        for message in messages:
            payload = (
                message.payload
                if isinstance(message.payload, bytes)
                else str(message.payload).encode()
            )
            topic = str(message.topic)
            try:
                decoded = decode_batch(payload)
            except ContractError as exc:
                letters.append(DeadLetter(now_us, topic, str(exc), payload, None, None))
                self.counters.dead_letters.labels(kind="payload").inc()
                continue
            batches.append(decoded.batch)
            for reject in decoded.rejected:
                letters.append(
                    DeadLetter(
                        now_us,
                        topic,
                        f"reading {reject.index}: {reject.reason}",
                        json.dumps(reject.fields).encode(),
                        decoded.batch.gateway_id,
                        decoded.batch.batch_seq,
                    )
                )
                self.counters.dead_letters.labels(kind="reading").inc()
        self.counters.messages.inc(len(messages))
        return batches, letters

    async def _until_stored(self, write: Callable[[], R]) -> R:
        """Run ``write`` in a thread until storage takes it, backing off while it is unreachable."""
        s = self.settings
        delay = s.storage_backoff_s
        while True:
            try:
                result = await asyncio.to_thread(write)
            except StorageUnavailable as exc:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self.counters.storage_outages.inc()
                    self.counters.storage_unavailable.set(1)
                    log.warning(
                        "storage unreachable (%s); holding messages unacked, retrying in %.1fs",
                        exc,
                        delay,
                    )
                else:
                    log.warning(
                        "storage still unreachable after %.1fs (%s); retrying in %.1fs",
                        time.monotonic() - self._outage_since,
                        exc,
                        delay,
                    )
                self.counters.storage_retries.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, s.storage_backoff_max_s)
                continue
            if self._outage_since is not None:
                log.warning(
                    "storage reachable again after %.1fs", time.monotonic() - self._outage_since
                )
                self._outage_since = None
                self.counters.storage_unavailable.set(0)
            return result
