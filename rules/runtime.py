"""Run the rule engine on stored batches: keep the alert book, store and publish alert events.

``RuleRuntime.on_stored`` has the signature of the ingest worker's ``on_stored`` hook, so the same
runtime serves the in-process wiring and the broker-fed rules worker (``rules.worker``).

The alerts table is the publish outbox: an event is stored first, published with QoS 1, and
marked published after its PUBACK. Whatever a crash, an outage or a failed publish left
unpublished goes out, oldest first, on start, after every (re)connection of the publisher and
periodically. Delivery is at least once: consumers recognise a repeated event.

Events the store could not take (an outage) stay pending in memory and are stored first on the
next call, so a batch the consume loop holds and retries loses none: its readings are then
duplicates for the engine, but its events were already made. No checkpoint is written while any
are pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zipfile
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import aiomqtt

from contract import AlertEvent, Batch, Reading
from contract.lazy_batch import reading_count
from contract.topics import alert_topic
from infra.errors import InfrastructureUnavailable, StorageUnavailable
from rules.alerts import AlertBook
from rules.baselines import BaselineExport, BaselineStore
from rules.checkpoint import Checkpoint, CheckpointStore, FileCheckpoints, decode_book, encode_book
from rules.columns import columns_from_batches
from rules.engine import RuleEngine
from rules.model import AnyRule
from rules.policy import US_PER_S, ReadingPolicy
from rules.registry import Registry

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    """The part of ``infra.telemetry.ReadingStore`` the runtime needs."""

    def store_alert_events(self, events: Sequence[AlertEvent]) -> int:
        """Store alert events, ignoring ones already stored; return how many were new."""
        ...

    def unpublished_alert_events(self, limit: int = 1000) -> list[AlertEvent]:
        """Up to ``limit`` stored alert events not yet marked published, oldest first."""
        ...

    def mark_alerts_published(self, events: Sequence[AlertEvent]) -> None:
        """Mark stored alert events published (by key); repeats and unknown events are no-ops."""
        ...


class Publisher(Protocol):
    """The part of ``aiomqtt.Client`` the runtime needs."""

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Publish one message."""
        ...


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """How often the runtime ticks and snapshots, and where the snapshot lives."""

    snapshot_path: Path | None = None
    snapshot_every_s: float = 60.0
    tick_every_s: float = 15.0
    # Ticks use the newest reading seen instead of the wall clock: for replays and simulations
    # whose time is not now. A whole fleet going quiet is then invisible, and readings that
    # arrive skewed (one path running ahead of another) can look like silence. Readings are
    # then also judged against the newest reading rather than their arrival (rules.policy).
    data_clock: bool = False
    # While stored alerts may be unpublished, retry them this often (besides on reconnection).
    outbox_every_s: float = 5.0
    outbox_page: int = 500
    policy: ReadingPolicy = field(default_factory=ReadingPolicy)
    # A takeover re-reads stored readings from this long before the checkpoint's newest one
    # (readings of a series older than its last accepted one are late and skipped).
    catch_up_s: float = 600.0
    catch_up_chunk: int = 20_000
    # Learnt wound baselines that changed are written to the store this often (the board's Δ).
    baselines_every_s: float = 60.0
    # ... unless their patch's newest reading is older than this: retention prunes those rows
    # ([retention] baselines_days), and a restart must not write them back.
    baselines_keep_s: float = 30 * 86_400.0
    # Calls with at most this many readings are evaluated on the event loop; larger ones (a
    # takeover's catch-up) in a thread, leaving the loop free meanwhile. A thread costs two
    # wake-ups per call, and on a loaded host each waits for a CPU: bench_rules measured the
    # runtime at 0.64 of the engine through a thread and 0.94 inline, with 100,000 readings per
    # call. Ingest awaits the call before its next group anyway, so the default takes a whole
    # group (32 batches of 5,000) inline: the loop is then held ~20-40 ms per 100,000 readings
    # (MQTT keep-alives and lease renewals are seconds). Lower it where a loop serves requests.
    inline_readings: int = 200_000


@dataclass
class RuntimeCounters:
    """What the runtime has done since it started."""

    batches: int = 0
    readings: int = 0
    events: int = 0
    published: int = 0
    published_late: int = 0  # of ``published``: sent from the outbox while a backlog was pending
    publish_failures: int = 0
    mark_failures: int = 0  # PUBACKed but not marked published: they will go out again
    snapshots: int = 0
    caught_up: int = 0  # stored readings re-evaluated on takeovers


def wall_clock_us() -> int:
    """Microseconds since the epoch now."""
    return time.time_ns() // 1000


class RuleRuntime:
    """Engine + AlertBook + alert storage + alert publishing, as one async context manager.

    ``async with RuleRuntime(rules, registry, store, client, settings) as runtime:`` then hand
    ``runtime.on_stored`` to an ``IngestWorker`` (or let ``RulesWorker`` feed it).

    A ``standby`` runtime (one replica of several, ``rules.replica``) neither evaluates nor
    ticks, publishes or checkpoints until ``take_over``; ``stand_down`` returns it to standby.
    """

    def __init__(
        self,
        rules: Sequence[AnyRule],
        registry: Registry | None,
        store: AlertStore | None,
        publisher: Publisher | None,
        settings: RuntimeSettings | None = None,
        *,
        checkpoints: CheckpointStore | None = None,
        standby: bool = False,
    ) -> None:
        self.rules = list(rules)
        self.registry: Registry = registry or {}
        self.store = store
        # Whether the store may hold events not yet published: true at start, since an earlier
        # process may have stored alerts and died before their PUBACK.
        self._unpublished = store is not None
        self._outbox_kick = asyncio.Event()
        self._publisher: Publisher | None = None
        self.publisher = publisher
        self.settings = settings or RuntimeSettings()
        path = self.settings.snapshot_path
        if checkpoints is None and path is not None:
            checkpoints = FileCheckpoints(path)
        self.checkpoints = checkpoints
        self.active = not standby
        self.counters = RuntimeCounters()
        self.recent: deque[AlertEvent] = deque(maxlen=1000)  # last delivered, for status views
        self._pending: list[AlertEvent] = []  # in the book, not yet stored
        self._catching_up = False
        # The book travels with the engine state: a clear after a restart must find its raise.
        self.engine, self.book = self._restored(self._load() if self.active else None)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._baselines = BaselineExport()

    def _load(self) -> Checkpoint | None:
        if self.checkpoints is None:
            return None
        try:
            return self.checkpoints.load()
        except OSError as exc:
            log.error("rules checkpoint %s unreadable (%s); starting fresh", self.checkpoints, exc)
            return None

    def _restored(self, checkpoint: Checkpoint | None) -> tuple[RuleEngine, AlertBook]:
        """The engine and book of ``checkpoint``; fresh ones if there is none or it is unusable."""
        policy = self.settings.policy
        fresh = RuleEngine(self.rules, self.registry, policy=policy), AlertBook()
        if checkpoint is None:
            return fresh
        try:
            engine = RuleEngine.restore(self.rules, self.registry, checkpoint.engine, policy=policy)
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.error("rules snapshot %s unusable (%s); starting fresh", self.checkpoints, exc)
            return fresh
        log.info("rules state restored from %s", self.checkpoints)
        if not engine.stats.accepted:
            return engine, AlertBook()
        try:
            return engine, decode_book(checkpoint.book)
        except ValueError as exc:
            log.error("alert book of %s unusable (%s); starting empty", self.checkpoints, exc)
            return engine, AlertBook()

    @property
    def publisher(self) -> Publisher | None:
        """The connected client alerts are published on, or None while there is none."""
        return self._publisher

    @publisher.setter
    def publisher(self, client: Publisher | None) -> None:
        self._publisher = client
        if client is not None:
            # A (re)connection: publish what is still pending before it waits for the next retry.
            self._outbox_kick.set()

    async def __aenter__(self) -> Self:
        if self.active:
            self._start_tasks()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_tasks()
        try:
            await self.snapshot()
        except (InfrastructureUnavailable, OSError) as error:
            log.error("last rules checkpoint not written: %s", error)
        try:
            await self.export_baselines()
        except InfrastructureUnavailable as error:
            log.warning("last wound baselines not written: %s", error)

    def _start_tasks(self) -> None:
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="rules-tick"))
        if self.store is not None:
            self._tasks.append(asyncio.create_task(self._outbox_loop(), name="rules-outbox"))
        if self.checkpoints is not None:
            self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="rules-snap"))
        if isinstance(self.store, BaselineStore):
            self._tasks.append(asyncio.create_task(self._baseline_loop(), name="rules-baselines"))

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def newest_us(self) -> int:
        """Timestamp of the newest reading evaluated so far (0 before the first)."""
        return self.engine.clock_us

    def _arrival_us(self) -> int | None:
        """The arrival time readings are judged against; None on the data clock."""
        return None if self.settings.data_clock else wall_clock_us()

    async def on_stored(self, batches: Sequence[Batch]) -> None:
        """The ingest hook: evaluate the committed batches, then store and publish alerts.

        Raises ``StorageUnavailable`` if the alerts cannot be stored: the caller holds the
        batches and calls again; the events are kept and stored then.
        """
        async with self._lock:
            await self._store_earlier()
            arrival = self._arrival_us()
            readings = sum(reading_count(b) for b in batches)
            if readings == 0:
                events: list[AlertEvent] = []
            elif readings <= self.settings.inline_readings:
                events = self._evaluate(batches, arrival)
            else:
                # In a thread (the lock keeps the engine to one caller): the event loop stays
                # free for the messages, confirmations and tickets sharing it meanwhile.
                events = await asyncio.to_thread(self._evaluate, batches, arrival)
            await self._deliver(events)
            # Counted once delivered, so "all readings seen" also means "their alerts are out".
            self.counters.batches += len(batches)
            self.counters.readings += readings

    def _evaluate(self, batches: Sequence[Batch], arrival_us: int | None) -> list[AlertEvent]:
        """Evaluate batches: columns straight from the decoded ones, no Reading built."""
        return self.engine.process(columns_from_batches(batches, self.engine.devices), arrival_us)

    async def tick(self, now_us: int | None = None) -> list[AlertEvent]:
        """Evaluate silence rules and composites at ``now_us`` (default: the runtime's clock)."""
        async with self._lock:
            await self._store_earlier()
            if now_us is None:
                now_us = self.engine.clock_us if self.settings.data_clock else wall_clock_us()
            if now_us <= 0:
                return []
            events = self.engine.tick(now_us)
            return await self._deliver(events)

    async def publish_pending(self) -> int:
        """Publish stored alert events not yet published, oldest first; return how many went."""
        async with self._lock:
            return await self._flush_outbox()

    async def snapshot(self) -> None:
        """Write a checkpoint (engine state and alert book), if a store for one is configured."""
        if self.checkpoints is None or not self.active:
            return
        async with self._lock:
            if self._pending:
                log.info("rules checkpoint skipped: %d alerts not stored yet", len(self._pending))
                return
            checkpoint = Checkpoint(self.engine.snapshot(), encode_book(self.book))
        await asyncio.to_thread(self.checkpoints.save, checkpoint)
        self.counters.snapshots += 1

    async def export_baselines(self) -> int:
        """Write the learnt wound baselines that changed since the last write; how many."""
        store = self.store
        if not isinstance(store, BaselineStore) or not self.active:
            return 0
        async with self._lock:  # read out in one piece; converted and written outside
            engine = self.engine
            found = engine.learnt_baselines()
            since = engine.clock_us - round(self.settings.baselines_keep_s * 1e6)
        export = self._baselines

        def write() -> int:  # in a thread: a fleet's first write is ~10^5 rows
            rows = export.changed(found, engine.devices.ids, since)
            if rows:
                store.store_baselines(rows)
                export.written(rows, engine.devices.get)
            return len(rows)

        return await asyncio.to_thread(write)

    async def take_over(
        self,
        checkpoint: Checkpoint | None,
        stored_since: Callable[[int], Sequence[Reading]],
        received: Sequence[Batch] = (),
    ) -> None:
        """Become the active runtime: restore ``checkpoint``, catch up, then tick and publish.

        Catching up evaluates the stored readings stamped from ``catch_up_s`` before the
        checkpoint's newest reading on (``stored_since(ts_us)``, in time order), then batches
        ``received`` while standing by, which ingest may not have stored yet. What the last
        active replica already evaluated is late or a duplicate for the engine; events it had
        already stored are stored again as no-ops, and everything goes out through the outbox,
        so an event it already published is not published again.
        """
        async with self._lock:
            self.engine, self.book = self._restored(checkpoint)
            self._baselines = BaselineExport()  # another engine state: all written again
            self._pending.clear()
            clock = self.engine.clock_us or self._arrival_us() or 0
            since = clock - round(self.settings.catch_up_s * US_PER_S)
            readings = await asyncio.to_thread(stored_since, since)
            step = self.settings.catch_up_chunk
            parts = [readings[i : i + step] for i in range(0, len(readings), step)]
            self._catching_up = True
            try:
                for part in parts:
                    await self._deliver(self.engine.process_readings(part, self._arrival_us()))
                for batch in received:
                    cols = columns_from_batches([batch], self.engine.devices)
                    await self._deliver(self.engine.process(cols, self._arrival_us()))
            finally:
                self._catching_up = False
            self.counters.caught_up += len(readings)
            self.active = True
        log.info(
            "rules active: checkpoint %s (newest reading %d); re-evaluated %d stored readings "
            "since %d and %d received batches",
            "restored" if checkpoint else "absent",
            clock,
            len(readings),
            since,
            len(received),
        )
        self._start_tasks()

    async def stand_down(self) -> None:
        """Stop evaluating, ticking, publishing and checkpointing (the lease is lost)."""
        await self._stop_tasks()
        self.active = False
        self.publisher = None

    async def _store_earlier(self) -> None:
        """Store events an earlier call could not (an outage); the outbox publishes them."""
        if self._pending:
            await self._store_pending()
            self._unpublished = self.store is not None

    async def _store_pending(self) -> None:
        """Store the events not stored yet; StorageUnavailable keeps them pending."""
        if self.store is None or not self._pending:
            self._pending.clear()
            return
        await asyncio.to_thread(self.store.store_alert_events, list(self._pending))
        self._pending.clear()

    async def _deliver(self, events: Sequence[AlertEvent]) -> list[AlertEvent]:
        """Fold into the book, store (durable first), then publish with QoS 1."""
        changed = self.book.apply(events)
        if not changed:
            return []
        self.counters.events += len(changed)
        self.recent.extend(changed)
        self._pending.extend(changed)
        await self._store_pending()
        if self._unpublished or self._catching_up:
            # Older events are still pending: they go first, and these with them.
            await self._flush_outbox()
        else:
            await self._publish(changed)
        return changed

    async def _publish(self, events: Sequence[AlertEvent], *, late: bool = False) -> bool:
        """Publish in order, marking each published after its PUBACK; False if any is left.

        Call with the lock held. With a store, the first failure stops the run: the outbox
        retries from there, in order. Without one, a failed event is lost, as it always was.
        """
        # Held locally: a worker losing the broker sets ``self.publisher`` to None meanwhile.
        publisher = self.publisher
        if publisher is None:
            self._unpublished = self.store is not None
            return not events
        for event in events:
            try:
                await publisher.publish(alert_topic(event.device_id), event.encode(), qos=1)
            except aiomqtt.MqttError as exc:
                self.counters.publish_failures += 1
                log.warning("alert %s on %s not published: %s", event.rule_id, event.device_id, exc)
                if self.store is None:
                    continue
                self._unpublished = True
                return False
            self.counters.published += 1
            self.counters.published_late += int(late)
            if self.store is not None and not await self._mark_published(event):
                return False
        return True

    async def _mark_published(self, event: AlertEvent) -> bool:
        """Record the PUBACK of ``event``; on a storage outage it stays pending (a duplicate)."""
        assert self.store is not None
        try:
            await asyncio.to_thread(self.store.mark_alerts_published, [event])
        except StorageUnavailable as exc:
            self.counters.mark_failures += 1
            self._unpublished = True
            log.warning(
                "alert %s on %s published but not marked (%s); it will repeat",
                event.rule_id,
                event.device_id,
                exc,
            )
            return False
        return True

    async def _flush_outbox(self) -> int:
        """Publish pending stored events, oldest first, page by page; call with the lock held."""
        if self.store is None or self.publisher is None:
            return 0
        page = self.settings.outbox_page
        sent = self.counters.published
        previous: list[AlertEvent] = []
        while True:
            try:
                pending = await asyncio.to_thread(self.store.unpublished_alert_events, page)
            except StorageUnavailable as exc:
                log.warning("unpublished alerts not readable (%s); retrying later", exc)
                self._unpublished = True
                break
            if pending and pending == previous:
                # Published but not marked, yet no error: a store that cannot mark. Do not spin.
                log.error("alert outbox does not drain; %d events stay pending", len(pending))
                self._unpublished = True
                break
            self._unpublished = False
            if pending and not await self._publish(pending, late=True):
                break
            if len(pending) < page:
                break
            previous = pending
        return self.counters.published - sent

    async def _tick_loop(self) -> None:
        failed = "alerts of a tick not stored yet (%s); they stay pending"
        await _every(self.settings.tick_every_s, self.tick, failed)

    async def _outbox_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_kick.wait(), self.settings.outbox_every_s)
            self._outbox_kick.clear()
            if self._pending:
                with contextlib.suppress(StorageUnavailable):
                    async with self._lock:
                        await self._store_earlier()
            if self._unpublished and self.publisher is not None:
                await self.publish_pending()

    async def _baseline_loop(self) -> None:
        failed = "wound baselines not written (%s); retrying later"
        await _every(self.settings.baselines_every_s, self.export_baselines, failed)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_every_s)
            try:
                await self.snapshot()
            except (InfrastructureUnavailable, OSError) as exc:
                log.warning("rules checkpoint not written (%s); retrying later", exc)


async def _every(seconds: float, work: Callable[[], Awaitable[object]], failed: str) -> None:
    """``work`` every ``seconds`` until cancelled; a storage outage is logged (``failed``, with
    its reason) and the next round tries again."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except StorageUnavailable as exc:
            log.warning(failed, exc)


async def publish_through(
    runtime: RuleRuntime, connect: Callable[[], aiomqtt.Client], backoff_s: float = 0.5
) -> None:
    """Keep ``runtime.publisher`` a connected client made by ``connect``, until cancelled.

    For the in-process runtime, which has no consuming connection of its own to publish on.
    Alerts raised while disconnected are stored and published once it is connected again.
    """
    while True:
        try:
            async with connect() as client:
                runtime.publisher = client
                # Nothing is subscribed: the iteration only ends by raising on disconnect.
                async for _ in client.messages:
                    pass
        except aiomqtt.MqttError as exc:
            log.warning("rules publisher lost the broker (%s); reconnecting", exc)
        finally:
            runtime.publisher = None
        await asyncio.sleep(backoff_s)
