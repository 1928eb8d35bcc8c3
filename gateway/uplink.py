"""Publishes outbox batches upstream with QoS 1; a batch leaves the outbox when ingest confirms it.

Delivery is end to end. The broker's PUBACK only frees an in-flight slot and marks the batch
published: Mosquitto acknowledges before it persists, so a broker crash can lose acknowledged
batches. Ingest publishes, after its commit, the batch_seqs it stored on the gateway's confirm
topic; the uplink subscribes to it in a persistent session (confirmations sent while it is away
are queued) and only then deletes the batches. After every (re)connect it resends every
unconfirmed batch (same batch_seq, same readings: ingest deduplicates), and while connected it
resends a batch whose confirmation is ``confirm_timeout_s`` late. At most ``max_unconfirmed``
batches are open at a time, so a broker whose consumer is down is not flooded.

An ingest that does not confirm (older than confirmations): nothing is ever deleted, the same
``max_unconfirmed`` batches are resent with a doubling timeout (up to
``confirm_backoff_max_s``) and every timeout logs a warning naming the missing confirmations.
Set ``require_confirmation=False`` to run on PUBACK semantics instead (a broker crash can then
lose what it had acknowledged but not yet saved).

With a ``confirm_key`` the uplink accepts only confirmations MACed with it (contract.confirm):
a confirmation published by anyone but ingest — a broker ACL gone wrong — is counted as
rejected and forgets nothing; the batch is resent after its timeout as if none had come.
The connection uses TLS with the gateway's own certificate when ``tls`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from contract import (
    Batch,
    Confirmation,
    ContractError,
    authentic,
    decode_confirmation,
    encode_batch,
)
from contract.codec import MAX_READINGS_PER_BATCH
from contract.lazy_batch import reading_count
from contract.topics import alert_topic, batch_topic, confirm_topic
from gateway.counters import GatewayCounters
from gateway.outbox import Outbox
from gateway.overflow_alert import OverflowAlarm
from infra.mqtt_tls import MqttTls, tls_context

log = logging.getLogger(__name__)

_SUBACK_FAILURE = 0x80


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
    require_confirmation: bool = True  # False: forget a batch on PUBACK (ingest cannot confirm)
    confirm_timeout_s: float = 30.0  # resend a published batch whose confirmation is this late
    confirm_backoff_max_s: float = 600.0  # the timeout doubles while no confirmation arrives
    max_unconfirmed: int = 64  # batches cut and not yet confirmed, at most
    tls: MqttTls | None = None  # None: plain TCP (the embedded demo broker)
    confirm_key: bytes | None = None  # set: refuse confirmations without this key's MAC

    def __post_init__(self) -> None:
        # Ingest rejects a bigger batch whole: it would be resent forever and never confirmed.
        if not 1 <= self.batch_max_readings <= MAX_READINGS_PER_BATCH:
            raise ValueError(
                f"batch_max_readings {self.batch_max_readings} must be within "
                f"1..{MAX_READINGS_PER_BATCH} (the wire codec's limit)"
            )


class Uplink:
    """Drains the outbox to the broker, reconnecting and resending after any outage."""

    def __init__(self, outbox: Outbox, settings: UplinkSettings, counters: GatewayCounters) -> None:
        self.outbox = outbox
        self.settings = settings
        self.counters = counters
        self.new_data = asyncio.Event()
        self.connected = asyncio.Event()
        self.topic = batch_topic(outbox.gateway_id)
        self.confirms = confirm_topic(outbox.gateway_id)
        self.alarm = OverflowAlarm(outbox)
        self.alerts_queued = asyncio.Event()
        self._room = asyncio.Event()  # set when a confirmation frees room for a new batch
        # batch_seq → monotonic time of its latest PUBACK, for batches awaiting confirmation.
        self._awaiting: dict[int, float] = {}
        self._confirm_wait_s = settings.confirm_timeout_s
        # Other publishers sharing the connection (the health summary), run while connected.
        self.publishers: list[Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]] = []

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
                # A persistent session: confirmations published while we are away are queued.
                # Without confirmations a clean one, so that a subscription left by an earlier
                # confirming run cannot fill our incoming queue with messages nobody reads.
                async with aiomqtt.Client(
                    self.settings.host,
                    self.settings.port,
                    identifier=f"vigil-gateway-{self.outbox.gateway_id}",
                    clean_session=not self.settings.require_confirmation,
                    timeout=self.settings.ack_timeout_s,
                    max_inflight_messages=self.settings.max_inflight,
                    tls_context=tls_context(self.settings.tls),
                ) as client:
                    self.connected.set()
                    backoff = self.settings.reconnect_backoff_s
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                backoff = await self._back_off(str(exc), backoff)
            except BaseExceptionGroup as group:
                # A failed publish inside the task group: same handling as a lost connection.
                if not group.subgroup(aiomqtt.MqttError):
                    raise
                backoff = await self._back_off("a publish failed", backoff)

    async def _back_off(self, reason: str, backoff: float) -> float:
        """Count and log a lost uplink, wait, and return the next, longer wait."""
        self.connected.clear()
        self.counters.uplink_reconnects.inc()
        log.warning("uplink lost (%s); retrying in %.1fs", reason, backoff)
        await asyncio.sleep(backoff)
        return min(backoff * 2, self.settings.reconnect_backoff_max_s)

    async def _pump(self, client: aiomqtt.Client) -> None:
        slots = asyncio.Semaphore(self.settings.max_inflight)
        confirming = self.settings.require_confirmation
        if confirming:
            # Before any publish, so no confirmation can be sent while we are not listening.
            granted = await client.subscribe(self.confirms, qos=1)
            if _refused(granted):
                log.error(
                    "the broker refused our subscription to %s: no batch can be "
                    "confirmed, each will be resent after its timeout",
                    self.confirms,
                )
        async with asyncio.TaskGroup() as group:
            # Drops committed just before a crash still raise their alert after the restart.
            await self.check_alarm()
            self.alerts_queued.set()
            group.create_task(self._publish_alerts(client))
            for publish in self.publishers:
                group.create_task(publish(client))
            if confirming:
                group.create_task(self._receive_confirmations(client))
                group.create_task(self._resend_overdue(client, slots, group))
            self._awaiting.clear()
            self._confirm_wait_s = self.settings.confirm_timeout_s
            # Whatever is unconfirmed goes first, with its original batch_seq: the broker may
            # have lost it, or ingest's confirmation may have been lost with the broker.
            for state in await asyncio.to_thread(self.outbox.open_batch_states):
                batch = await asyncio.to_thread(self.outbox.batch, state.batch_seq)
                if batch is None:
                    continue  # confirmed meanwhile, or dropped by the bound
                await slots.acquire()
                self.counters.resent_batches.inc()
                group.create_task(self._send(client, batch, slots))
            while True:
                batch = await self._next_batch()
                await slots.acquire()
                group.create_task(self._send(client, batch, slots))

    def _has_room(self) -> bool:
        return (
            not self.settings.require_confirmation
            or self.outbox.open_batch_count() < self.settings.max_unconfirmed
        )

    async def _next_batch(self) -> Batch:
        limit = self.settings.batch_max_readings
        while True:
            if not self._has_room():
                # Back-pressure: nothing new until ingest confirms what is out there.
                self._room.clear()
                if not self._has_room():
                    await self._room.wait()
                continue
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
            if self.settings.require_confirmation:
                now_us = time.time_ns() // 1000
                if await asyncio.to_thread(self.outbox.mark_published, batch.batch_seq, now_us):
                    self._awaiting[batch.batch_seq] = time.monotonic()
            else:
                await asyncio.to_thread(self.outbox.acknowledge, batch.batch_seq)
            self.counters.batches_sent.inc()
            self.counters.readings_sent.inc(reading_count(batch))
            if self.alarm.active and not self.settings.require_confirmation:
                await self.check_alarm()  # the backlog shrank: maybe below the clear level
        finally:
            slots.release()

    async def _receive_confirmations(self, client: aiomqtt.Client) -> None:
        """Forget each batch ingest confirms as stored; wake the cutter if room opened."""
        async for message in client.messages:
            if not message.topic.matches(self.confirms):
                continue
            payload = (
                message.payload
                if isinstance(message.payload, bytes)
                else str(message.payload).encode()
            )
            try:
                confirmation = decode_confirmation(payload)
            except ContractError as exc:
                self.counters.confirmations_rejected.inc()
                log.warning("ignoring a bad confirmation on %s: %s", self.confirms, exc)
                continue
            refusal = self._refusal(confirmation)
            if refusal is not None:
                self.counters.confirmations_rejected.inc()
                log.warning("ignoring a confirmation on %s: %s", self.confirms, refusal)
                continue
            self.counters.confirmations_received.inc()
            removed = await asyncio.to_thread(self.outbox.confirm, confirmation.batch_seqs)
            for seq in confirmation.batch_seqs:
                acked = self._awaiting.pop(seq, None)
                if acked is not None:  # PUBACK → ingest's word that it committed the batch
                    self.counters.confirm_seconds.observe(time.monotonic() - acked)
            self._confirm_wait_s = self.settings.confirm_timeout_s  # ingest is answering
            if removed:
                self.counters.readings_confirmed.inc(removed)
            self._room.set()
            if self.alarm.active:
                await self.check_alarm()  # the backlog shrank: maybe below the clear level

    def _refusal(self, confirmation: Confirmation) -> str | None:
        """Why ``confirmation`` must not make us forget anything, or None if it may."""
        if confirmation.gateway_id != self.outbox.gateway_id:
            return f"it is for gateway {confirmation.gateway_id!r}"
        key = self.settings.confirm_key
        if key is None or authentic(confirmation, key):
            return None
        if confirmation.mac is None:
            return "it carries no MAC (is ingest's [ingest] confirm_key_file set?)"
        return "its MAC is wrong (forged, or ingest's master secret is not ours)"

    async def _resend_overdue(
        self, client: aiomqtt.Client, slots: asyncio.Semaphore, group: asyncio.TaskGroup
    ) -> None:
        """Resend published batches whose confirmation is late, backing off while none come."""
        tick = max(0.01, self.settings.confirm_timeout_s / 10)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            overdue = sorted(
                seq for seq, at in self._awaiting.items() if now - at >= self._confirm_wait_s
            )
            if not overdue:
                continue
            log.warning(
                "no confirmation from ingest on %s for %d published batch(es) (batch_seq %s) "
                "after %.1fs: is ingest running, and does it send confirmations? Resending; "
                "next timeout %.1fs (require_confirmation=false runs on broker PUBACKs)",
                self.confirms,
                len(overdue),
                _seq_ranges(overdue),
                self._confirm_wait_s,
                min(2 * self._confirm_wait_s, self.settings.confirm_backoff_max_s),
            )
            self._confirm_wait_s = min(
                2 * self._confirm_wait_s, self.settings.confirm_backoff_max_s
            )
            for seq in overdue:
                if self._awaiting.pop(seq, None) is None:
                    continue  # confirmed while we were resending the ones before it
                batch = await asyncio.to_thread(self.outbox.batch, seq)
                if batch is None:
                    continue  # confirmed meanwhile, or dropped by the bound
                await slots.acquire()
                self.counters.resent_on_timeout.inc()
                group.create_task(self._send(client, batch, slots))

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


def _refused(granted: tuple[int, ...] | list[ReasonCode]) -> bool:
    """Whether a SUBACK (MQTT 3: granted QoS ints; 5: reason codes) reports a failure."""
    return any(c >= _SUBACK_FAILURE if isinstance(c, int) else c.is_failure for c in granted)


def _seq_ranges(seqs: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``"1-3, 7"``: a short way to name many batches in a log line."""
    parts: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], -1]:
        if seq == prev + 1:
            prev = seq
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = seq
    return ", ".join(parts[:5]) + (" …" if len(parts) > 5 else "")
