"""PostgreSQL or the broker is killed while alerts arrive: every alert opens exactly one ticket.

The service worker acknowledges an alert only once its ticket committed, holds it unacknowledged
through a database outage, and absorbs the redeliveries a broker restart brings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import aiomqtt
import psycopg
import pytest

from contract import AlertEvent, AlertTransition, Severity
from contract.topics import alert_topic
from service.audit import verify
from service.desk import alert_ticket_id
from service.model import Ticket
from service.store import PostgresStore
from service.worker import ServiceWorker, WorkerSettings
from tests.servers import PrivateMosquitto, PrivatePostgres

pytestmark = pytest.mark.services

BASE_US = 1_772_442_000_000_000
DOWN_S = 2.0


def alerts(first: int, count: int) -> list[AlertEvent]:
    """``count`` distinct raised alerts, each about its own device: one ticket each."""
    return [
        AlertEvent(
            device_id=f"dev-{n:03d}",
            rule_id="scope.leak",
            severity=Severity.CRITICAL,
            transition=AlertTransition.RAISED,
            at_us=BASE_US + n,
        )
        for n in range(first, first + count)
    ]


def settings(port: int, client_id: str, group: int | None = None) -> WorkerSettings:
    """A worker that retries held alerts quickly, committing up to ``group`` alerts at once."""
    default = WorkerSettings()
    return WorkerSettings(
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        tick_s=3600,
        outbox_poll_s=0.1,
        reconnect_backoff_s=0.1,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.5,
        alert_group_max=default.alert_group_max if group is None else group,
    )


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own, durable: killing it must not undo a commit we acked on."""
    server = PrivatePostgres(durable=True)
    server.start()
    yield server
    server.cleanup()


@contextlib.asynccontextmanager
async def running(worker: ServiceWorker) -> AsyncIterator[asyncio.Task[None]]:
    """``worker.run()`` as a task, once subscribed; cancelled at the end."""
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.subscribed.wait(), 15)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def publish(port: int, batch: Sequence[AlertEvent]) -> None:
    """Publish each alert on its device's topic with QoS 1 (each PUBACKed by the broker)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="outage-rules") as client:
        for event in batch:
            await client.publish(alert_topic(event.device_id), event.encode(), qos=1)


def ticket_ids(dsn: str) -> list[str]:
    """Every ticket id in the database, duplicates included (a fresh connection each time)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM service_tickets ORDER BY id")]
    except psycopg.OperationalError:
        return []  # down or restarting


async def until_tickets(dsn: str, count: int, within_s: float = 60.0) -> list[str]:
    """Wait until ``count`` tickets are stored; fail the test if they never are."""
    deadline = time.monotonic() + within_s
    while len(ids := await asyncio.to_thread(ticket_ids, dsn)) < count:
        assert time.monotonic() < deadline, f"only {len(ids)} of {count} tickets stored"
        await asyncio.sleep(0.05)
    return ids


async def until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test if it never does."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


def assert_one_ticket_per_alert(store: PostgresStore, sent: Sequence[AlertEvent]) -> None:
    """No alert lost, none doubled, every ticket carrying its alert once, a sound audit chain."""
    tickets = store.tickets()
    assert sorted(t.id for t in tickets) == sorted(alert_ticket_id(a) for a in sent)
    assert all(len(t.evidence) == 1 for t in tickets), "an alert was applied twice"
    assert store.dead_letters() == []
    opened = [e for e in store.audit_log() if e.action == "opened"]
    assert len(opened) == len(sent)
    assert verify(store.audit_log()).ok


async def test_postgres_killed_while_alerts_arrive_loses_and_doubles_nothing(
    mosquitto: PrivateMosquitto, postgres: PrivatePostgres
) -> None:
    before, during = alerts(0, 10), alerts(10, 30)
    store = PostgresStore(postgres.dsn)
    worker = ServiceWorker(settings(mosquitto.port, "svc-pg-outage"), store)
    outage = worker.alerts.loop.outage
    async with running(worker) as task:
        await publish(mosquitto.port, before)
        await until_tickets(postgres.dsn, len(before))
        await asyncio.to_thread(postgres.kill)
        await publish(mosquitto.port, during)  # the broker takes them; the worker cannot commit
        await until(lambda: outage.active)
        await asyncio.sleep(DOWN_S)  # the outage lasts a while, alerts held meanwhile
        assert not task.done(), "the worker died with the database"
        assert outage.active and outage.retries >= 2
        await asyncio.to_thread(postgres.start)
        ids = await until_tickets(postgres.dsn, len(before) + len(during))
        await until(lambda: worker.alerts_received >= len(before) + len(during))
        assert not task.done(), "the worker died after the database came back"
    print(f"held alert retried {outage.retries} times over {outage.count} outage(s)")
    assert len(ids) == len(set(ids)) == len(before) + len(during)
    assert outage.count >= 1 and not outage.active
    assert worker.alerts_rejected == 0
    assert_one_ticket_per_alert(store, before + during)
    store.close()


class Slow(PostgresStore):
    """A real store whose ticket writes take a while, so alerts are in flight when it matters."""

    def put_ticket(self, ticket: Ticket) -> Ticket:
        """Write after a pause."""
        time.sleep(0.08)
        return super().put_ticket(ticket)


async def test_broker_killed_with_alerts_in_flight_loses_and_doubles_nothing(
    mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    first, after = alerts(0, 40), alerts(40, 10)
    store = Slow(timescale_dsn)
    # Groups of 5: groups committed and acknowledged, others delivered but not yet acknowledged.
    worker = ServiceWorker(settings(mosquitto.port, "svc-broker-kill", group=5), store)
    async with running(worker) as task:
        await publish(mosquitto.port, first)
        # Some committed and acknowledged, the rest delivered or queued but not yet acknowledged;
        # meanwhile the broker has saved its state (every second) with all of them in it.
        await until(lambda: worker.tickets_opened >= 25)
        assert worker.tickets_opened < len(first)
        await asyncio.to_thread(mosquitto.kill)
        await until(lambda: not worker.subscribed.is_set())
        assert not task.done()
        await asyncio.to_thread(mosquitto.start)
        await asyncio.wait_for(worker.subscribed.wait(), 30)
        await publish(mosquitto.port, after)
        await until_tickets(timescale_dsn, len(first) + len(after))
        await until(lambda: worker.alerts_received >= len(first) + len(after))
        assert not task.done()
    print(
        f"alerts settled {worker.alerts_received} for {len(first) + len(after)} sent "
        "(the difference is redeliveries absorbed)"
    )
    assert_one_ticket_per_alert(store, first + after)
    store.close()
