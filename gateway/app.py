"""The gateway process: sources → outbox → uplink, as one async context manager.

Every reading is validated (catalog, ids, 64-bit integers, the timestamp window of the gateway's
clock) before the outbox; what fails is dead-lettered with its reason. The gateway supervises
its tasks: a source or the uplink dying of an exception is logged with its traceback, raised as
a ``gateway.source_failed`` alert upstream (durable: published after the restart if need be) and
reported through ``wait_failed()``, so that the process exits (and is restarted) rather than
running on as a zombie that no longer forwards anything. Sources recover what they can
themselves and report faults (``gateway.ble.…`` alerts); a periodic health summary goes out on
``vigil/v1/gateways/<id>/health`` (gateway/health.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from contract import Reading, TimeWindow
from contract.reading import split_valid
from contract.validation import DEFAULT_MAX_AGE_S, DEFAULT_MAX_FUTURE_S, id_problem
from gateway import dead_letters
from gateway.command_journal import CommandJournal
from gateway.counters import GatewayCounters
from gateway.dead_letters import Letter
from gateway.device_info import DeviceInfoPublisher, DeviceInfoSource
from gateway.equipment_bridge import EquipmentBridge, SiteBrokerSettings
from gateway.health import BLE_PREFIX, SOURCE_FAILED, FaultingSource, HealthAlarms, HealthReporter
from gateway.outbox import Outbox
from gateway.remote import RemoteAgent, RemoteSettings
from gateway.source import ReadingSource
from gateway.uplink import Uplink, UplinkSettings
from infra.time_us import now_us

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything one gateway box needs to know."""

    gateway_id: str = "gw-1"
    outbox_path: Path = Path("var/gateway-outbox.db")
    outbox_max_readings: int = 10_000_000
    outbox_max_bytes: int | None = None  # also bound the outbox's live database pages
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    site_broker: SiteBrokerSettings | None = None  # None: no equipment to bridge
    # The timestamp window against the gateway's clock (None: no bound on that side).
    max_reading_age_s: float | None = DEFAULT_MAX_AGE_S
    max_clock_skew_s: float | None = DEFAULT_MAX_FUTURE_S
    dead_letter_max_bytes: int = dead_letters.DEFAULT_MAX_BYTES
    # Dead letters older than this go ([retention] dead_letters_days; None: only the byte bound),
    # checked every dead_letter_expiry_interval_s.
    dead_letter_max_age_s: float | None = 90 * 86_400.0
    dead_letter_expiry_interval_s: float = 3600.0
    health_every_s: float = 60.0  # how often the health summary is published
    # Running this long without a task dying clears a source-failed alert left by an earlier
    # run, and faults an earlier run raised that the sources do not see any more.
    healthy_after_s: float = 60.0
    # Presence (last will) and remote commands over MQTT 5 (gateway/remote.py); None: off.
    remote: RemoteSettings | None = None


class Gateway:
    """Runs every source and the uplink until the context exits.

    ``async with Gateway(settings, sources) as gateway: await gateway.drained()``
    """

    def __init__(
        self,
        settings: GatewaySettings,
        sources: Sequence[ReadingSource] = (),
        counters: GatewayCounters | None = None,
    ) -> None:
        self.settings = settings
        self.counters = counters or GatewayCounters()
        settings.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            settings.outbox_path,
            settings.gateway_id,
            settings.outbox_max_readings,
            settings.outbox_max_bytes,
            settings.dead_letter_max_bytes,
            settings.dead_letter_max_age_s,
        )
        self.uplink = Uplink(self.outbox, settings.uplink, self.counters)
        self.sources: list[ReadingSource] = list(sources)
        self.bridge: EquipmentBridge | None = None
        if settings.site_broker is not None:
            self.bridge = EquipmentBridge(
                settings.site_broker,
                self.outbox,
                self.counters,
                settings.gateway_id,
                self.window,
            )
            self.sources.append(self.bridge)
        self._tasks: list[asyncio.Task[None]] = []
        self._source_tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None  # the first task that died, if one did
        self._failed = asyncio.Event()
        self.alarms = HealthAlarms(self.outbox, self.uplink.alerts_queued.set)
        for source in self.sources:
            if isinstance(source, FaultingSource):
                source.faults.sink = self.alarms.source_fault
            use_dead_letters = getattr(source, "use_dead_letters", None)
            if callable(use_dead_letters):
                use_dead_letters(self.dead_letter_readings)
        self.health = HealthReporter(
            self.outbox, self.sources, self.alarms, settings.health_every_s, self._rules
        )
        self.uplink.publishers.append(self.health.publish)
        for source in self.sources:
            if isinstance(source, DeviceInfoSource):
                info = DeviceInfoPublisher(settings.gateway_id, source)
                self.uplink.publishers.append(info.publish)
        self.remote: RemoteAgent | None = None
        if settings.remote is not None:
            self.remote = RemoteAgent(
                settings.gateway_id,
                self.outbox,
                settings.uplink,
                settings.site_broker,
                settings.remote,
                CommandJournal(settings.outbox_path, settings.gateway_id),
            )

    async def __aenter__(self) -> Self:
        self._tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        if self.remote is not None:
            self._tasks.append(asyncio.create_task(self.remote.run(), name="remote"))
        if self.settings.dead_letter_max_age_s is not None:
            expiry = asyncio.create_task(self._expire_dead_letters(), name="dead-letter-expiry")
            self._tasks.append(expiry)
        for source in self.sources:
            task = asyncio.create_task(source.run(self.accept), name=f"source:{source.name}")
            self._source_tasks.append(task)
        for task in (*self._tasks, *self._source_tasks):
            task.add_done_callback(self._watch)
        self._tasks.append(asyncio.create_task(self._reconcile(), name="reconcile"))
        return self

    def _watch(self, task: asyncio.Task[None]) -> None:
        """Note a task that died of an exception (a finite source that returns is fine)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("gateway task %s died; the gateway stops", task.get_name(), exc_info=exc)
        try:
            self.alarms.report(
                SOURCE_FAILED,
                True,
                f"{task.get_name()} died: {exc!r}; the gateway process exits to be restarted",
                {"task": task.get_name(), "error": repr(exc)},
            )
        except Exception:  # the outbox itself may be what failed; the exit still happens
            log.exception("could not queue the source-failed alert")
        if self.failure is None:
            self.failure = exc
        self._failed.set()

    def _rules(self) -> list[str]:
        """Every gateway-level alert rule this gateway can raise."""
        rules = [SOURCE_FAILED]
        for source in self.sources:
            if isinstance(source, FaultingSource):
                rules += [BLE_PREFIX + name for name in source.faults.names()]
        return rules

    async def _reconcile(self) -> None:
        """After running healthy for a while, clear what an earlier run left raised."""
        await asyncio.sleep(self.settings.healthy_after_s)
        if self.failure is not None:
            return
        up = {SOURCE_FAILED: False}
        for source in self.sources:
            if isinstance(source, FaultingSource):
                active = {f.value for f in source.faults.active}
                up |= {BLE_PREFIX + n: n in active for n in source.faults.names()}
        for rule, raised in up.items():
            if not raised:
                message = f"running for {self.settings.healthy_after_s:g} s without it"
                await asyncio.to_thread(self.alarms.report, rule, False, message)

    async def wait_failed(self) -> BaseException:
        """Wait until a source or the uplink dies of an exception; return that exception."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    def window(self) -> TimeWindow:
        """The timestamps accepted now, by the gateway's clock."""
        s = self.settings
        return TimeWindow.at(now_us(), s.max_reading_age_s, s.max_clock_skew_s)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = [*self._source_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            # Cancel again until it takes: on Python 3.11 asyncio.wait_for (inside aiomqtt)
            # can lose a cancel that races its inner future (CPython gh-86296), and the outbox
            # must not close under a still-running uplink.
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                task.cancel()
            # A task that died was logged by _watch; its exception is not raised again here.
            with contextlib.suppress(asyncio.CancelledError):
                task.exception()
        if self.remote is not None:
            self.remote.close()
        self.outbox.close()

    async def accept(self, readings: Sequence[Reading]) -> None:
        """The sink every source writes to: validate, persist, wake the uplink."""
        window = self.window()
        good, bad = split_valid(readings, window)
        if bad:
            # Bad values are kept aside, never forwarded and never silently lost.
            self.counters.readings_rejected.labels(reason="invalid_reading").inc(len(bad))
            for reading, _ in bad:
                device_id = reading.device_id
                if window.ahead(reading.ts_us) and id_problem("device_id", device_id) is None:
                    self.counters.future_skew.labels(device_id=device_id).inc()
            received = now_us()
            await self._dead_letter([_letter(received, r, problem) for r, problem in bad])
        if not good:
            return
        try:
            dropped = await asyncio.to_thread(self.outbox.append, good)
        except sqlite3.OperationalError:
            raise  # the disk, not the data: the caller holds or fails
        except Exception:
            # Validation should have caught it; still, one reading must not take the rest down.
            log.exception("the outbox refused a group of readings; appending them one by one")
            good, dropped = await self._append_each(good)
        self.counters.readings_in.labels(source="all").inc(len(good))
        if dropped:
            self.counters.dropped_readings.inc(dropped)
            log.error("outbox bound reached: dropped the %d oldest readings", dropped)
            await self.uplink.check_alarm()  # raised as an alert upstream, never silent
        self.uplink.wake()

    async def _append_each(self, readings: Sequence[Reading]) -> tuple[list[Reading], int]:
        """Append readings one at a time, dead-lettering each the outbox refuses.

        Returns the readings appended and how many old ones the bound dropped.
        """
        appended: list[Reading] = []
        dropped = 0
        for reading in readings:
            try:
                dropped += await asyncio.to_thread(self.outbox.append, [reading])
            except sqlite3.OperationalError:
                raise
            except Exception as exc:
                self.counters.readings_rejected.labels(reason="outbox_refused").inc()
                reason = f"outbox refused the reading: {type(exc).__name__}: {exc}"
                await self._dead_letter([_letter(now_us(), reading, reason)])
            else:
                appended.append(reading)
        return appended, dropped

    async def dead_letter_readings(self, readings: Sequence[Reading], reason: str) -> None:
        """Dead-letter readings a source cannot forward (e.g. their time is unknown)."""
        received = now_us()
        self.counters.readings_rejected.labels(reason="source_dead_letter").inc(len(readings))
        await self._dead_letter([_letter(received, r, reason) for r in readings])

    async def _dead_letter(self, letters: Sequence[Letter]) -> None:
        dropped = await asyncio.to_thread(self.outbox.dead_letter_many, letters)
        if dropped:
            self.counters.dead_letters_dropped.inc(dropped)
            log.warning("dead-letter bound reached: dropped the %d oldest dead letters", dropped)

    async def _expire_dead_letters(self) -> None:
        """Apply the dead letters' age bound now and every expiry interval, until cancelled."""
        s = self.settings
        while True:
            try:
                expired = await asyncio.to_thread(self.outbox.expire_dead_letters, now_us())
            except sqlite3.Error:
                # The disk, for now: the letters are still bounded in bytes meanwhile.
                log.exception("could not expire old dead letters; trying again later")
            else:
                if expired:
                    log.info(
                        "expired %d dead letters older than %.0fs", expired, s.dead_letter_max_age_s
                    )
            await asyncio.sleep(s.dead_letter_expiry_interval_s)

    async def sources_done(self) -> None:
        """Wait until every finite source (e.g. a simulator run) has finished."""
        finite = [
            t for t, s in zip(self._source_tasks, self.sources, strict=True) if s is not self.bridge
        ]
        if finite:
            await asyncio.gather(*finite)

    async def drained(self, poll_s: float = 0.05) -> None:
        """Wait until the outbox is empty: ingest confirmed storing everything produced so far.

        (With ``require_confirmation`` off: the broker acknowledged it.) Unconfirmed readings
        stay pending, so with ingest down this waits until it is back.
        """
        while True:
            if self.failure is not None:
                raise self.failure
            stats = await asyncio.to_thread(self.outbox.stats)
            self.counters.outbox_pending.set(stats.pending_readings)
            if stats.pending_readings == 0:
                return
            await asyncio.sleep(poll_s)


def _letter(received_at_us: int, reading: Reading, reason: str) -> Letter:
    """A dead letter for one reading: its fields as JSON, under its device id."""
    fields = json.dumps(reading._asdict(), default=repr).encode()
    return Letter(received_at_us, reading.device_id, reason, fields)
