"""The ingest worker: broker → validate → storage, acknowledging only what is committed.

It consumes through the shared ``ConsumeLoop`` (``infra.consume``), one group of at most
``max_messages_per_write`` messages at a time. For each group the handler decodes the batches,
stores them and the group's dead letters idempotently, runs the ``on_stored`` hook, and
publishes (QoS 1, awaited) the confirmations before it returns; only then does the loop
acknowledge the messages. Every message ends in one of three ways:

- **committed**: its batch is stored (or was already: a redelivery or a gateway's resend is a
  duplicate), readings the contract rejects are dead letters, and the batch_seq is confirmed
  to its gateway on ``confirm_topic``. A gateway forgets a batch only on that confirmation,
  never on the broker's PUBACK, which can precede the broker's own persistence. A confirmation
  lost with a broker is harmless: the gateway resends the batch, storage deduplicates it, and it
  is confirmed again.
- **dead-lettered** with a reason: a payload that does not decode, a batch whose gateway is not
  the one its topic names, a reading of a device the installed base does not register to that
  gateway's site (the batch's other readings are stored), or a batch the database refuses for
  its data (``BadBatch``: NUL in a text, a timestamp or integer out of range) or that fails in
  any other unexpected way. The loop retries a failing group message by message, so only the
  bad message is dead-lettered (by ``_dead_letter``, into the store); its neighbours commit.
  A dead-lettered batch that decoded is confirmed too: its fate is final, and a gateway
  resending it would only fill the dead letters.
- **held** while storage is unreachable (``StorageUnavailable``: PostgreSQL restarting, failing
  over, unreachable; SQLite locked past its busy timeout): the loop keeps its MQTT connection
  and the group in hand, acks none of it, and retries with exponential backoff
  (``storage_backoff_s`` doubling up to ``storage_backoff_max_s``) until it commits. It takes
  no new group meanwhile; the broker stops sending once its in-flight window of unacked
  messages is full and queues the rest in the persistent session. Should the broker connection
  drop, the loop reconnects and the broker redelivers the unacked messages.

Counters are incremented once per settled group, however often it was retried.

Confirmations carry a MAC under the gateway's key (derived from ``confirm_master_key``), so a
gateway holding that key forgets a batch only on ingest's word. A gateway that keeps sending
unregistered devices gets one gateway-level alert (``UnregisteredAlarm``), published after the
group's confirmations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from contract import AlertEvent, Batch, Confirmation, encode_confirmation
from contract.confirm import split_confirmation
from contract.topics import alert_topic, batch_subscription, confirm_topic
from contract.validation import DEFAULT_MAX_AGE_S, DEFAULT_MAX_FUTURE_S, TimeWindow
from infra.confirm_keys import gateway_key
from infra.consume import ConsumeLoop, ConsumerSettings, Outage, hold_until_done, payload_bytes
from infra.errors import StorageUnavailable
from infra.installed_base import InstalledBaseFile
from infra.mqtt_tls import MqttTls
from infra.telemetry.base import DeadLetter, ReadingStore, StoreOutcome
from infra.time_us import now_us
from ingest.counters import IngestCounters
from ingest.messages import DecodedGroup, batch_of, confirmations, decode_group
from ingest.unregistered_alarm import UnregisteredAlarm

log = logging.getLogger(__name__)

# Called with what was just committed, e.g. to feed the rule engine in process.
StoredHook = Callable[[Sequence[Batch]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Broker connection and write batching for one worker."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vigil-ingest-1"  # unique per replica, stable across its restarts
    shared_group: str | None = None  # set → MQTT v5 shared subscription $share/<group>/…
    mqtt_v5: bool = True
    session_expiry_s: int = 24 * 3600
    max_messages_per_write: int = 32
    reconnect_backoff_s: float = 0.5
    confirm: bool = True  # publish delivery confirmations for gateways to forget their batches
    storage_backoff_s: float = 0.2  # first wait before retrying a write storage could not take
    storage_backoff_max_s: float = 10.0  # the wait doubles per retry up to this
    # Readings outside [now - age, now + skew] are dead-lettered (None: no bound that side).
    max_reading_age_s: float | None = DEFAULT_MAX_AGE_S
    max_clock_skew_s: float | None = DEFAULT_MAX_FUTURE_S
    tls: MqttTls | None = None  # None: plain TCP (the embedded demo broker)
    confirm_master_key: bytes | None = None  # None: confirmations without a MAC
    installed_base_file: Path | None = None  # None: any gateway may report any device
    unregistered_alert_after: int = 100  # unregistered readings per gateway per window
    unregistered_alert_window_s: float = 3600.0

    def window(self, at_us: int) -> TimeWindow:
        """The timestamps accepted at ``at_us``."""
        return TimeWindow.at(at_us, self.max_reading_age_s, self.max_clock_skew_s)

    def consumer(self) -> ConsumerSettings:
        """The consume loop's settings for this worker."""
        return ConsumerSettings(
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            subscription=batch_subscription(self.shared_group),
            mqtt_v5=self.mqtt_v5,
            session_expiry_s=self.session_expiry_s,
            reconnect_backoff_s=self.reconnect_backoff_s,
            max_group=self.max_messages_per_write,
            retry_backoff_s=self.storage_backoff_s,
            retry_backoff_max_s=self.storage_backoff_max_s,
            tls=self.tls,
        )

    def confirm_key(self, gateway_id: str) -> bytes | None:
        """The key that MACs ``gateway_id``'s confirmations (None: no master secret)."""
        master = self.confirm_master_key
        return None if master is None else gateway_key(master, gateway_id)


class StorageOutage(Outage):
    """The consume loop's outage tracker, mirrored into the ingest storage counters."""

    def __init__(self, counters: IngestCounters) -> None:
        super().__init__("ingest: storage")
        self.counters = counters

    def failed(self, exc: BaseException, delay: float) -> None:
        """Count the retry, and the outage if this failure begins one."""
        if not self.active:
            self.counters.storage_outages.inc()
            self.counters.storage_unavailable.set(1)
        self.counters.storage_retries.inc()
        super().failed(exc, delay)

    def recovered(self) -> None:
        """Clear the unavailable gauge."""
        self.counters.storage_unavailable.set(0)
        super().recovered()


@dataclass(frozen=True, slots=True)
class _Stored:
    """A group whose batches committed before a later step of its handling was held."""

    messages: tuple[aiomqtt.Message, ...]
    outcome: StoreOutcome

    def same_group(self, messages: Sequence[aiomqtt.Message]) -> bool:
        """Whether ``messages`` is this very group again (the loop retrying it)."""
        return len(messages) == len(self.messages) and all(
            a is b for a, b in zip(messages, self.messages, strict=True)
        )


class IngestWorker:
    """Consumes batches with QoS 1 in a persistent session and stores them idempotently."""

    def __init__(
        self,
        settings: IngestSettings,
        store: ReadingStore,
        counters: IngestCounters | None = None,
        on_stored: StoredHook | None = None,
        installed_base: InstalledBaseFile | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counters = counters or IngestCounters()
        self.on_stored = on_stored
        if installed_base is None and settings.installed_base_file is not None:
            installed_base = InstalledBaseFile(settings.installed_base_file)
        self.installed_base = installed_base
        self.alarm = UnregisteredAlarm(
            settings.unregistered_alert_after, settings.unregistered_alert_window_s
        )
        self._alerts: list[AlertEvent] = []  # raised, not yet published
        self.outage = StorageOutage(self.counters)
        self.loop = ConsumeLoop(
            settings.consumer(),
            self._handle,
            self._dead_letter,
            name="ingest",
            on_client=self._on_client,
        )
        # Ingest's only infrastructure besides the broker is storage: the loop's holds are
        # storage outages, counted as such.
        self.loop.outage = self.outage
        self.subscribed = self.loop.subscribed
        self._client: aiomqtt.Client | None = None
        self._stored: _Stored | None = None

    async def run(self) -> None:
        """Consume forever, reconnecting after broker outages."""
        await self.loop.run()

    async def handle(self, messages: Sequence[aiomqtt.Message]) -> list[Confirmation]:
        """Store one group without a broker, waiting out storage outages; what to confirm."""
        s = self.settings
        return await hold_until_done(
            lambda: self.store_group(messages),
            self.outage,
            s.storage_backoff_s,
            s.storage_backoff_max_s,
        )

    async def store_group(self, messages: Sequence[aiomqtt.Message]) -> list[Confirmation]:
        """Decode and store one group once; what to confirm. Raises what the store raises."""
        at_us = now_us()
        installed = None if self.installed_base is None else self.installed_base.current()
        group = decode_group(messages, at_us, self.settings.window(at_us), installed)
        outcome = await self._store_batches(messages, group.batches)
        if group.letters:
            # Stored after the batches, which a BadBatch leaves unstored: the message-by-message
            # retry that follows it then keeps each letter once. A connection lost during this
            # COMMIT may leave it stored and the retry appends it twice: harmless for diagnosis.
            await asyncio.to_thread(self.store.store_dead_letters, group.letters)
        self._stored = None
        self._count(len(messages), group, outcome)
        await self._run_hook(group.batches)
        # Committed now: new, already stored, or every reading dead-lettered, all are final.
        # A payload that did not decode names no batch: there is nothing to confirm.
        return confirmations(group.batches)

    async def confirm(self, client: aiomqtt.Client, confirmations: Sequence[Confirmation]) -> None:
        """Publish committed batch_seqs to each gateway's confirm topic, QoS 1."""
        if not self.settings.confirm or not confirmations:
            return
        pieces = [p for c in confirmations for p in split_confirmation(c)]
        key = self.settings.confirm_key
        await asyncio.gather(
            *(
                client.publish(
                    confirm_topic(p.gateway_id),
                    encode_confirmation(p, key(p.gateway_id)),
                    qos=1,
                )
                for p in pieces
            )
        )
        self.counters.confirmations_sent.inc(len(pieces))
        self.counters.batches_confirmed.inc(sum(len(p.batch_seqs) for p in pieces))

    async def _handle(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        """The loop's handler: store the group, then confirm it before the loop acks it."""
        confirmed = await self.store_group(messages)
        # Awaited before the acks: unacked, a lost confirmation's batches are redelivered and
        # confirmed again (the gateway would also resend them).
        await self.confirm(client, confirmed)
        await self.publish_alerts(client)

    async def publish_alerts(self, client: aiomqtt.Client) -> None:
        """Publish the gateway alerts raised so far, QoS 1, each forgotten once PUBACKed."""
        while self._alerts:
            event = self._alerts[0]
            await client.publish(alert_topic(event.device_id), event.encode(), qos=1)
            self._alerts.pop(0)
            self.counters.gateway_alerts.inc()
            log.warning("alert %s published for gateway %s", event.rule_id, event.device_id)

    async def _store_batches(
        self, messages: Sequence[aiomqtt.Message], batches: list[Batch]
    ) -> StoreOutcome:
        """Store the group's batches, unless this same group's were committed before a hold."""
        if self._stored is not None and self._stored.same_group(messages):
            # Stored already, then held on its dead letters: storing again would count the
            # batches as duplicates.
            return self._stored.outcome
        outcome = StoreOutcome()
        if batches:
            outcome = await asyncio.to_thread(self.store.store_batches, batches)
        self._stored = _Stored(tuple(messages), outcome)
        return outcome

    def _count(self, messages: int, group: DecodedGroup, outcome: StoreOutcome) -> None:
        """Count one settled group."""
        c = self.counters
        c.messages.inc(messages)
        for kind, letters in group.letter_kinds.items():
            c.dead_letters.labels(kind=kind).inc(letters)
        c.batches_new.inc(outcome.batches_new)
        c.batches_duplicate.inc(outcome.batches_duplicate)
        c.readings_stored.inc(outcome.readings_inserted)
        for gateway, readings in group.unregistered.items():
            c.readings_unregistered.labels(gateway_id=gateway).inc(readings)
            example = group.unregistered_reason[gateway]
            log.info("dead-lettered %d readings of gateway %s: %s", readings, gateway, example)
            event = self.alarm.note(gateway, readings, example, now_us())
            if event is not None:
                self._alerts.append(event)

    async def _run_hook(self, batches: Sequence[Batch]) -> None:
        """Feed committed batches to ``on_stored``; its failure cannot undo the commit."""
        if self.on_stored is None or not batches:
            return
        # The readings are committed and must be confirmed and acked regardless; holding them
        # for the hook would re-feed it batches it has already seen, and dead-lettering them
        # would misreport stored readings.
        try:
            await self.on_stored(batches)
        except StorageUnavailable as exc:
            self.counters.hook_storage_failures.inc()
            log.warning("on_stored hook failed on unreachable storage: %s", exc)
        except Exception:
            self.counters.hook_errors.inc()
            log.exception("on_stored hook failed; the batches stay stored and are confirmed")

    async def _dead_letter(self, message: aiomqtt.Message, reason: str) -> None:
        """The loop's dead-letter sink: keep the whole message with why, then confirm its batch.

        ``StorageUnavailable`` propagates (the loop holds the group); anything else storing
        the letter is logged with the message and counted, never raised: it would stop the
        loop, and the same message would stop it again after every restart.
        """
        payload = payload_bytes(message)
        topic = str(message.topic)
        batch = batch_of(message)
        letter = DeadLetter(
            now_us(),
            topic,
            reason,
            payload,
            None if batch is None else batch.gateway_id,
            None if batch is None else batch.batch_seq,
        )
        try:
            await asyncio.to_thread(self.store.store_dead_letters, [letter])
            self.counters.dead_letters.labels(kind="message").inc()
        except StorageUnavailable:
            raise
        except Exception:
            self.counters.dead_letters.labels(kind="unstorable").inc()
            log.exception(
                "could not store the dead letter of a message on %s (%s); payload: %r",
                topic,
                reason,
                payload[:2000],
            )
        self.counters.messages.inc()
        if batch is not None and self._client is not None:
            await self.confirm(self._client, confirmations([batch]))

    def _on_client(self, client: aiomqtt.Client | None) -> None:
        """Remember the loop's connection: the dead-letter sink confirms through it."""
        self._client = client
