"""The one consume loop: every QoS 1 message ends committed, dead-lettered, or held and retried.

Ingest, the rules worker, the service worker and the gateway's equipment bridge all consume
through ``ConsumeLoop``. For each group of messages the handler either

- returns: the work is committed, and the messages are acknowledged;
- raises ``InfrastructureUnavailable`` (a database or broker outage): the group is held
  unacknowledged and retried with exponential back-off until it commits — no new group is taken
  meanwhile, so the broker queues the rest in the persistent session;
- raises anything else (``Poison``, a bug, an unexpected driver error): the message can never
  succeed as it is. A group is retried one message at a time so one bad message cannot take its
  neighbours down; the message that still fails is dead-lettered with the reason, counted,
  logged, and acknowledged. The loop never dies of a message.

A lost broker connection (``aiomqtt.MqttError``) reconnects; the broker redelivers whatever was
not acknowledged, which is why every handler must be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt
from prometheus_client import CollectorRegistry

from contract import ContractError
from infra.errors import InfrastructureUnavailable, Poison
from infra.logs import started
from infra.metrics import ConsumeMetrics, consume_metrics
from infra.mqtt_session import ack, enable_manual_ack, persistent_client
from infra.mqtt_tls import MqttTls

log = logging.getLogger(__name__)

T = TypeVar("T")
GroupHandler = Callable[[aiomqtt.Client, Sequence[aiomqtt.Message]], Awaitable[None]]
DeadLetterSink = Callable[[aiomqtt.Message, str], Awaitable[None]]
ClientHook = Callable[[aiomqtt.Client | None], None]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Where to consume from and how patiently to retry."""

    host: str
    port: int
    client_id: str  # stable across restarts: the broker keeps the session under it
    subscription: str
    mqtt_v5: bool = True
    session_expiry_s: int = 24 * 3600
    reconnect_backoff_s: float = 0.5
    max_group: int = 1  # messages handed to the handler at once (one transaction)
    retry_backoff_s: float = 0.2  # first wait before retrying a held group
    retry_backoff_max_s: float = 10.0  # the wait doubles per retry up to this
    tls: MqttTls | None = None  # None: plain TCP (the embedded demo broker)


def payload_bytes(message: aiomqtt.Message) -> bytes:
    """A message's payload as bytes, whatever aiomqtt decoded it to."""
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode() if payload is not None else b""


class Outage:
    """Tracks one outage so it is logged once when it starts and once when it ends."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.count = 0  # outages begun
        self.retries = 0

    def failed(self, exc: BaseException, delay: float) -> None:
        """Note a failed attempt; the first one of an outage is logged as a warning."""
        self.retries += 1
        if self.since is None:
            self.since = time.monotonic()
            self.count += 1
            log.warning(
                "%s unavailable (%s: %s); holding work, retrying in %.1fs",
                self.what,
                type(exc).__name__,
                exc,
                delay,
                extra={"outage": self.what, "error": f"{type(exc).__name__}: {exc}"},
            )
        else:
            log.info("%s still unavailable after %.1fs (%s)", self.what, self.elapsed(), exc)

    def recovered(self) -> None:
        """Note a success; ends the outage if one was running."""
        if self.since is not None:
            elapsed = self.elapsed()
            log.warning(
                "%s available again after %.1fs (%d retries so far)",
                self.what,
                elapsed,
                self.retries,
                extra={"outage": self.what, "outage_seconds": round(elapsed, 3)},
            )
            self.since = None

    @property
    def active(self) -> bool:
        """Whether an outage is under way."""
        return self.since is not None

    def elapsed(self) -> float:
        """Seconds since the outage began (0 when none is running)."""
        return 0.0 if self.since is None else time.monotonic() - self.since


async def hold_until_done(
    attempt: Callable[[], Awaitable[T]], outage: Outage, backoff_s: float, backoff_max_s: float
) -> T:
    """Await ``attempt`` until it does not raise ``InfrastructureUnavailable``, backing off."""
    delay = backoff_s
    while True:
        try:
            result = await attempt()
        except InfrastructureUnavailable as exc:
            outage.failed(exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max_s)
            continue
        outage.recovered()
        return result


class ConsumeLoop:
    """Consumes one subscription in a persistent session; ``await loop.run()`` runs forever."""

    def __init__(
        self,
        settings: ConsumerSettings,
        handle: GroupHandler,
        dead_letter: DeadLetterSink,
        *,
        name: str,
        on_client: ClientHook | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.dead_letter = dead_letter
        self.name = name
        self.on_client = on_client  # told of each new connection, and of None when it is lost
        self.subscribed = asyncio.Event()
        self.outage = Outage(f"{name}: infrastructure")
        self.dead_lettered = 0
        self.committed = 0
        self.metrics: ConsumeMetrics | None = None  # set by instrument()
        self._connections = 0
        self._queue: asyncio.Queue[aiomqtt.Message] | None = None

    def instrument(self, registry: CollectorRegistry) -> None:
        """Count this loop's work in ``registry`` (the process's), labelled with its name."""
        self.metrics = consume_metrics(registry)
        self.metrics.connected.labels(self.name).set(0)

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return persistent_client(
            s.host,
            s.port,
            s.client_id,
            mqtt_v5=s.mqtt_v5,
            session_expiry_s=s.session_expiry_s,
            tls=s.tls,
        )

    async def run(self) -> None:
        """Consume forever, reconnecting after broker outages."""
        while True:
            try:
                async with self._client() as client:
                    enable_manual_ack(client)
                    if self.on_client is not None:
                        self.on_client(client)
                    await client.subscribe(self.settings.subscription, qos=1)
                    self._connected()
                    self.subscribed.set()
                    await self._consume(client)
            except* aiomqtt.MqttError as group:
                # Raised bare by connect/subscribe, or wrapped by the consume task group.
                self.subscribed.clear()
                if self.on_client is not None:
                    self.on_client(None)
                if self.metrics is not None:
                    self.metrics.connected.labels(self.name).set(0)
                    self.metrics.disconnects.labels(self.name).inc()
                log.warning("%s lost the broker (%s); reconnecting", self.name, group.exceptions[0])
                await asyncio.sleep(self.settings.reconnect_backoff_s)

    def _connected(self) -> None:
        """Say where the loop consumes: always the first time, at INFO on reconnections."""
        s = self.settings
        self._connections += 1
        if self.metrics is not None:
            self.metrics.connected.labels(self.name).set(1)
        context = {
            "broker": f"{s.host}:{s.port}",
            "tls": s.tls is not None,
            "client_id": s.client_id,
            "topic": s.subscription,
            "mqtt": "5" if s.mqtt_v5 else "3.1.1",
        }
        where = f"connected to {s.host}:{s.port} as {s.client_id}, subscribed to {s.subscription}"
        if self._connections == 1:
            started(self.name, where, shown=("tls", "mqtt"), **context)
        else:
            log.info("%s: %s again", self.name, where, extra=context)

    @property
    def queued(self) -> int:
        """Messages received and waiting for the group in hand to commit (0 when offline)."""
        return 0 if self._queue is None else self._queue.qsize()

    async def _consume(self, client: aiomqtt.Client) -> None:
        queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(maxsize=4 * self.settings.max_group)
        self._queue = queue

        async def receive() -> None:
            async for message in client.messages:
                await queue.put(message)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(receive())
                while True:
                    messages = [await queue.get()]
                    # Whatever queued up meanwhile goes into the same transaction.
                    while len(messages) < self.settings.max_group and not queue.empty():
                        messages.append(queue.get_nowait())
                    await self.process(client, messages)
                    for message in messages:
                        ack(client, message)
        finally:
            self._queue = None  # unacknowledged: the broker redelivers them to the next session

    async def process(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        """Commit or dead-letter every message of the group, holding it through outages."""
        s = self.settings
        m = self.metrics

        async def attempt() -> None:
            try:
                await self._settle(client, messages)
            except InfrastructureUnavailable:
                if m is not None:
                    m.retries.labels(self.name).inc()
                    if not self.outage.active:
                        m.outages.labels(self.name).inc()
                    m.holding.labels(self.name).set(1)
                raise

        await hold_until_done(attempt, self.outage, s.retry_backoff_s, s.retry_backoff_max_s)
        if m is not None:
            m.holding.labels(self.name).set(0)

    async def _settle(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        try:
            began = time.perf_counter()
            await self.handle(client, messages)
            self.committed += len(messages)
            if self.metrics is not None:
                self.metrics.handle_seconds.labels(self.name).observe(time.perf_counter() - began)
                self.metrics.messages.labels(self.name, "committed").inc(len(messages))
            return
        except (InfrastructureUnavailable, aiomqtt.MqttError):
            raise
        except Exception as exc:
            if len(messages) > 1:
                # Find the bad one: each message alone commits or is dead-lettered by itself.
                for message in messages:
                    await self._settle(client, [message])
                return
            reason, kind = _reason(exc), type(exc).__name__
        message = messages[0]
        await self.dead_letter(message, reason)
        self.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.messages.labels(self.name, "dead_lettered").inc()
            self.metrics.dead_letters.labels(self.name, kind).inc()
        log.warning(
            "%s dead-lettered a message on %s (%s, %d bytes): %s",
            self.name,
            message.topic,
            kind,
            len(payload_bytes(message)),
            reason,
            extra={
                "consumer": self.name,
                "topic": str(message.topic),
                "error": kind,
                "reason": reason,
                "mid": message.mid,
                "client_id": self.settings.client_id,
            },
        )


def _reason(exc: Exception) -> str:
    """The dead-letter reason: a Poison's own words, or the unexpected error with its type."""
    if isinstance(exc, Poison | ContractError):
        return str(exc)
    log.exception("unexpected error handling a message; it is dead-lettered", exc_info=exc)
    return f"unexpected {type(exc).__name__}: {exc}"[:1000]
