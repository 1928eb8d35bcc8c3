"""The service worker's message contract on real Mosquitto and PostgreSQL.

An alert is acknowledged only after its ticket committed; alerts that queued up behind a commit
share the next one (group commit); an outage holds them; a malformed alert, or one whose
handling fails, is dead-lettered with the reason and the next alert goes on. The ticker and the
notification sender outlive storage outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import psycopg
import pytest

from contract import AlertEvent, AlertTransition, Severity
from contract.topics import alert_topic
from infra.errors import StorageUnavailable
from service import desk
from service.concurrency import ConcurrentUpdate
from service.model import DeadLetter, Delivery, OutboxItem, OutboxStatus, Ticket
from service.store import PostgresStore, SqliteStore
from service.worker import ServiceWorker, WorkerSettings
from tests.servers import PrivateMosquitto
from tests.service.factories import T0, device, engineer, hours, site, ticket

BASE_US = 1_772_442_000_000_000


def alert(device_id: str, n: int = 0) -> AlertEvent:
    """A raised critical alert about ``device_id``; ``n`` makes it a distinct one."""
    return AlertEvent(
        device_id=device_id,
        rule_id="scope.leak",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=BASE_US + n,
    )


def settings(port: int, tick_s: float = 3600) -> WorkerSettings:
    """A worker on ``port`` that retries held alerts quickly."""
    return WorkerSettings(
        host="127.0.0.1",
        port=port,
        client_id="worker-contract",
        tick_s=tick_s,
        outbox_poll_s=0.05,
        retry_backoff_s=0.02,
        retry_backoff_max_s=0.2,
    )


class Buggy(PostgresStore):
    """A real PostgreSQL store with a bug that strikes tickets of device ``boom`` only."""

    def put_ticket(self, ticket: Ticket) -> Ticket:
        """Fail like a bug would for ``boom``; store everything else."""
        if ticket.device_id == "boom":
            raise RuntimeError("simulated bug")
        return super().put_ticket(ticket)


class PerCommit(PostgresStore):
    """A real PostgreSQL store that notes, per committed outermost transaction, what its
    ``noted`` set gathered (``lock_device``, ``record_delivery``… add to it)."""

    def __init__(self, dsn: str) -> None:
        self.committed: list[list[str]] = []
        self._tx = threading.local()
        super().__init__(dsn)  # migrates, in transactions of its own

    @property
    def noted(self) -> list[str]:
        """What the transaction in progress on this thread has noted so far."""
        return self._tx.noted  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """The store's transaction, keeping what it noted once it committed."""
        if self._open() is not None:
            with super().atomic():
                yield
            return
        self._tx.noted = noted = list[str]()
        with super().atomic():
            yield
        if noted:
            self.committed.append(noted)


class Recording(PerCommit):
    """Notes the devices each committed transaction locked."""

    def lock_device(self, device_id: str) -> None:
        """Lock, and note it."""
        super().lock_device(device_id)
        self.noted.append(device_id)


class Flaky(SqliteStore):
    """A SQLite store whose chosen calls find the database unavailable while ``down`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise StorageUnavailable("database restarting")

    def tickets(self, *args: object, **kwargs: object) -> list[Ticket]:
        """Unavailable while down."""
        self._check()
        return super().tickets(*args, **kwargs)  # type: ignore[arg-type]

    def dead_letter(self, letter: DeadLetter) -> None:
        """Unavailable while down."""
        self._check()
        super().dead_letter(letter)

    def pending_notifications(self, limit: int = 100) -> list[OutboxItem]:
        """Unavailable while down."""
        self._check()
        return super().pending_notifications(limit)


@contextlib.asynccontextmanager
async def running(worker: ServiceWorker) -> AsyncIterator[asyncio.Task[None]]:
    """``worker.run()`` as a task, once subscribed; cancelled at the end."""
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.subscribed.wait(), 10)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def publish(port: int, *messages: tuple[str, bytes]) -> None:
    """Publish each (topic, payload) with QoS 1, in order."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="contract-publisher") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test if it never does."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


@pytest.fixture
def pg_store(timescale_dsn: str) -> Iterator[Buggy]:
    store = Buggy(timescale_dsn)
    yield store
    store.close()


@pytest.mark.services
async def test_bad_alerts_are_dead_lettered_and_the_next_one_becomes_a_ticket(
    mosquitto: PrivateMosquitto, pg_store: Buggy
) -> None:
    worker = ServiceWorker(settings(mosquitto.port), pg_store)
    good, misrouted, bug = alert("d1"), alert("d2"), alert("boom")
    async with running(worker) as task:
        await publish(
            mosquitto.port,
            (alert_topic("d1"), b'{"device_id": "d1", "rule_id": '),  # truncated JSON
            (alert_topic("d3"), misrouted.encode()),  # about d2, but on d3's topic
            (alert_topic("boom"), bug.encode()),  # its handling raises
            (alert_topic("d1"), good.encode()),
        )
        await until(lambda: worker.alerts_received == 4)
        assert not task.done()
    letters = pg_store.dead_letters()[::-1]  # oldest first
    assert [d.topic for d in letters] == [alert_topic("d1"), alert_topic("d3"), alert_topic("boom")]
    assert "alert event" in letters[0].reason and letters[0].payload.startswith(b'{"device_id"')
    assert "arrived on vigil/v1/alerts/d3" in letters[1].reason
    assert letters[2].reason == "unexpected RuntimeError: simulated bug"
    assert letters[2].payload == bug.encode()
    assert worker.alerts_rejected == 3 and worker.tickets_opened == 1
    assert [t.id for t in pg_store.tickets()] == [desk.alert_ticket_id(good)]


@pytest.mark.services
async def test_an_alert_held_through_an_outage_commits_once(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = Flaky(tmp_path / "service.db")
    worker = ServiceWorker(settings(mosquitto.port), store)
    loop = worker.alerts.loop
    async with running(worker) as task:
        for n, batch in enumerate(
            [
                # A dead letter is held until it is stored, like a ticket.
                [(alert_topic("d1"), b"{"), (alert_topic("d1"), alert("d1", 1).encode())],
                [(alert_topic("d1"), alert("d1", 2).encode())],
            ]
        ):
            store.down, refused = True, store.refused
            settled = worker.alerts_received
            await publish(mosquitto.port, *batch)
            await until(lambda r=refused: store.refused >= r + 3)  # retried with back-off
            assert worker.alerts_received == settled and loop.outage.active
            store.down = False
            await until(lambda s=settled, b=batch: worker.alerts_received == s + len(b))
            assert loop.outage.count == n + 1 and not loop.outage.active
        assert not task.done()
    (only,) = store.tickets()  # one (device, rule): the second alert is evidence on the first
    assert only.id == desk.alert_ticket_id(alert("d1", 1)) and len(only.evidence) == 2
    assert [d.payload for d in store.dead_letters()] == [b"{"]  # kept once, after the outage
    assert worker.alerts_rejected == 1
    store.close()


@pytest.mark.services
async def test_ticker_and_sender_outlive_a_storage_outage(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = Flaky(tmp_path / "service.db")
    store.put_site(site("s1"))
    store.put_device(device("d1"))
    store.put_engineer(engineer("e1"))
    store.put_ticket(ticket("a", at=T0 - hours(1)))
    worker = ServiceWorker(settings(mosquitto.port, tick_s=0.05), store, clock=lambda: T0)
    async with running(worker) as task:
        store.down = True
        await until(lambda: worker.ticker.outage.retries >= 3)
        await until(lambda: worker.notifier.outage.retries >= 3)
        assert worker.ticker.outage.count == 1 and worker.notifier.outage.count == 1
        store.down = False
        await until(lambda: not worker.ticker.outage.active and not worker.notifier.outage.active)
        await asyncio.wait_for(worker.drain(), 10)
        assert not task.done()


@pytest.mark.services
def test_machine_changes_are_retried_after_a_lost_race(timescale_dsn: str) -> None:
    store, rival = PostgresStore(timescale_dsn), PostgresStore(timescale_dsn)
    store.put_ticket(ticket("a"))
    seen: list[int] = []

    def change() -> Ticket:
        current = store.ticket("a")
        assert current is not None
        seen.append(current.version)
        if len(seen) == 1:  # another process writes between our read and our write
            rival.put_ticket(current.model_copy(update={"title": "rival"}))
        return store.put_ticket(current.model_copy(update={"title": current.title + "+mine"}))

    done = desk.retrying(store, change)
    assert seen == [1, 2] and (done.title, done.version) == ("rival+mine", 3)
    assert store.ticket("a") == done
    with pytest.raises(ConcurrentUpdate):  # a race lost every time is reported, not hidden
        desk.retrying(store, lambda: store.put_ticket(ticket("a")), attempts=2)
    store.close()
    rival.close()


def lock_waiters(dsn: str) -> int:
    """Sessions waiting for an advisory lock (a device's tickets) right now."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return 0 if row is None else int(row[0])


@contextlib.contextmanager
def device_locked(dsn: str, device_id: str) -> Iterator[threading.Event]:
    """Another writer holds ``device_id``'s tickets until the event yielded is set."""
    rival, locked, release = PostgresStore(dsn), threading.Event(), threading.Event()

    def hold() -> None:
        with rival.atomic():
            rival.lock_device(device_id)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()
        rival.close()


@pytest.mark.services
async def test_alerts_queued_behind_a_commit_share_the_next_one(
    mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    store = Recording(timescale_dsn)
    worker = ServiceWorker(settings(mosquitto.port), store)
    queued = [alert(f"d{n}") for n in range(1, 6)]
    async with running(worker):
        with device_locked(timescale_dsn, "d0") as release:
            await publish(
                mosquitto.port, *[(alert_topic(a.device_id), a.encode()) for a in [alert("d0")]]
            )
            await until(lambda: lock_waiters(timescale_dsn) == 1)  # the worker waits on d0
            await publish(mosquitto.port, *[(alert_topic(a.device_id), a.encode()) for a in queued])
            await until(lambda: worker.alerts.loop.queued == len(queued))
            assert worker.alerts_received == 0  # nothing committed: nothing acknowledged
            release.set()
            await until(lambda: worker.alerts_received == 1 + len(queued))
    # d0's transaction waited for the other writer; the five behind it went in one commit.
    assert [set(devices) for devices in store.committed] == [
        {"d0"},
        {a.device_id for a in queued},
    ]
    assert worker.tickets_opened == 6 and len(store.tickets()) == 6
    store.close()


@pytest.mark.services
async def test_a_group_commits_all_of_its_alerts_or_none(pg_store: Buggy) -> None:
    worker = ServiceWorker(settings(1883), pg_store)
    with pytest.raises(RuntimeError, match="simulated bug"):
        await worker.alerts.handle_alerts([alert("d1"), alert("boom"), alert("d2")])
    assert pg_store.tickets() == []  # the loop then retries them one at a time
    tickets = await worker.alerts.handle_alerts([alert("d1"), alert("d2"), alert("d1", 1)])
    assert [t.device_id if t else None for t in tickets] == ["d1", "d2", "d1"]
    assert worker.tickets_opened == 2 and len(pg_store.tickets()) == 2


def test_a_group_holds_at_least_one_alert() -> None:
    with pytest.raises(ValueError, match="alert_group_max must be at least 1, not 0"):
        WorkerSettings(alert_group_max=0)


class Deliveries(PerCommit):
    """Notes the delivery records each committed transaction wrote; the update of an item of
    device ``boom`` fails like a bug would, ``failures`` times."""

    def __init__(self, dsn: str) -> None:
        self.failures = 0
        super().__init__(dsn)

    @property
    def per_commit(self) -> list[int]:
        """Delivery records per committed transaction that wrote any."""
        return [len(records) for records in self.committed]

    def record_delivery(self, delivery: Delivery) -> None:
        """Record, and note it."""
        super().record_delivery(delivery)
        self.noted.append(f"{delivery.event_id}#{delivery.attempt}")

    def update_notification(self, item: OutboxItem) -> None:
        """Fail for device ``boom`` while failures are left."""
        if item.payload.get("device_id") == "boom" and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("simulated bug")
        super().update_notification(item)


@pytest.mark.services
async def test_deliveries_that_end_together_are_recorded_together(
    mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    store = Deliveries(timescale_dsn)
    worker = ServiceWorker(settings(mosquitto.port), store)
    async with running(worker):
        await worker.alerts.handle_alerts([alert(f"d{n}") for n in range(4)])
        await asyncio.wait_for(worker.drain(), 10)
    items = store.notifications()
    assert len(items) >= 4 and all(i.status is OutboxStatus.DONE for i in items)
    assert sum(store.per_commit) == len(items)  # each attempt recorded once…
    assert len(store.per_commit) < len(items)  # …in fewer transactions than attempts
    store.close()


@pytest.mark.services
async def test_a_delivery_whose_record_fails_keeps_the_others_recorded(
    mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    store = Deliveries(timescale_dsn)
    store.failures = 10**6  # boom's notifications can never be recorded

    def boom(item: OutboxItem) -> bool:
        return item.payload.get("device_id") == "boom"

    def others_done() -> bool:
        others = [i for i in store.notifications() if not boom(i)]
        return len(others) >= 2 and all(i.status is OutboxStatus.DONE for i in others)

    worker = ServiceWorker(settings(mosquitto.port), store)
    async with running(worker):
        await worker.alerts.handle_alerts([alert("d1"), alert("boom"), alert("d2")])
        await until(others_done)
    items = store.notifications()
    assert any(boom(i) for i in items)
    for item in items:  # boom's stay pending (sent again later); the others recorded once
        recorded = store.deliveries(item.event_id)
        if boom(item):
            assert item.status is OutboxStatus.PENDING and recorded == []
        else:
            assert item.status is OutboxStatus.DONE and len(recorded) == 1
    store.close()
