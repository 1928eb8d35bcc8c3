"""The notification outbox on real components: a local HTTP receiver, Mosquitto, SQLite files.

A worker that dies after the ticket commit but before delivery — its task cancelled, or its
process SIGKILLed — leaves the notifications pending in the store; the next worker sends them.
Delivery is *at least once* with a stable event id: a crash after the receiver's 2xx but before
the outbox row is marked done resends the same event id, which receivers drop. In these tests the
crash comes before any request reaches the receiver, so it sees each event id exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import AlertEvent, AlertTransition, Severity
from service.model import Channel, OutboxStatus
from service.notify import EVENT_ID_HEADER
from service.store import ServiceStore, SqliteStore
from service.worker import BREACH_CURSOR, Endpoint, NotifyConfig, ServiceWorker, WorkerSettings
from tests.servers import PrivateMosquitto
from tests.service.factories import T0, device, engineer, hours, site, ticket
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "outbox-secret"


def settings(port: int, url: str, **notify: Any) -> WorkerSettings:
    """A worker on ``port`` that sends the team and engineer e1 webhooks to ``url``."""
    hook = Endpoint(url=url, secret=SECRET)
    config = NotifyConfig(
        service_team=(hook,),
        engineers={"e1": (hook,)},
        **{"attempts": 3, "backoff_s": 0.05, **notify},
    )
    return WorkerSettings(
        host="127.0.0.1",
        port=port,
        client_id="outbox-test",
        tick_s=3600,
        notify=config,
        outbox_poll_s=0.1,
    )


def seed(store: ServiceStore) -> None:
    """One hospital, one endoscope, one engineer who can take it."""
    store.put_site(site("s1"))
    store.put_device(device("d1"))
    store.put_engineer(engineer("e1"))


ALERT = AlertEvent(
    device_id="d1",
    rule_id="scope.leak",
    severity=Severity.CRITICAL,
    transition=AlertTransition.RAISED,
    at_us=1_772_442_000_000_000,
)


async def running(worker: ServiceWorker) -> asyncio.Task[None]:
    """``worker.run()`` as a task, once it is subscribed."""
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.subscribed.wait(), 10)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` the way a crash or Ctrl-C would, and wait until it is gone."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def restart_and_deliver(path: Path, port: int, receiver: Receiver) -> SqliteStore:
    """A fresh worker on the same database: it sends what the last one left pending."""
    store = SqliteStore(path)
    worker = ServiceWorker(settings(port, receiver.url), store)
    task = await running(worker)
    await asyncio.wait_for(worker.drain(), 10)
    await stop(task)
    return store


def assert_sent_once_each(store: ServiceStore, receiver: Receiver) -> None:
    webhooks = [i for i in store.notifications() if i.channel is Channel.WEBHOOK]
    assert len(webhooks) == 2  # the team and the engineer
    sent = sorted(e for e, _ in receiver.events(EVENT_ID_HEADER))
    assert sent == sorted(i.event_id for i in webhooks)
    assert all(i.status is OutboxStatus.DONE for i in store.notifications())
    for item in store.notifications():  # every attempt recorded: one each, successful
        tries = [d for d in store.deliveries(item.event_id) if d.url.endswith(item.target)]
        assert [(d.attempt, d.ok) for d in tries] == [(1, True)]


class Hanging:
    """A sender whose request never completes: the process dies while it is outstanding."""

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.services
async def test_cancelled_worker_sends_after_restart(
    mosquitto: PrivateMosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "service.db"
    store = SqliteStore(path)
    seed(store)
    hanging = Hanging()
    worker = ServiceWorker(settings(mosquitto.port, receiver.url), store, sender=hanging)
    task = await running(worker)
    opened = await worker.handle_alert(ALERT)
    assert opened is not None and opened.assignee == "e1"
    await asyncio.wait_for(hanging.called.wait(), 10)
    await stop(task)  # crash: ticket committed, webhooks not delivered
    assert receiver.received == []
    pending = [i for i in store.pending_notifications() if i.channel is Channel.WEBHOOK]
    assert len(pending) == 2 and all(i.attempts == 0 for i in pending)
    store.close()

    again = await restart_and_deliver(path, mosquitto.port, receiver)
    assert_sent_once_each(again, receiver)
    assert {b["ticket_id"] for _, b in receiver.events(EVENT_ID_HEADER)} == {opened.id}
    again.close()


CRASH_AFTER_COMMIT = """
import asyncio, os, signal, sys
from service.store import SqliteStore
from service.worker import ServiceWorker
from tests.service.test_service_outbox import ALERT, settings

async def main() -> None:
    worker = ServiceWorker(settings(int(sys.argv[2]), sys.argv[3]), SqliteStore(sys.argv[1]))
    ticket = await worker.handle_alert(ALERT)  # committed, with its outbox rows
    assert ticket is not None
    os.kill(os.getpid(), signal.SIGKILL)  # before the sender loop ever ran

asyncio.run(main())
"""


@pytest.mark.services
async def test_killed_process_sends_after_restart(
    mosquitto: PrivateMosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "service.db"
    store = SqliteStore(path)
    seed(store)
    store.close()
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASH_AFTER_COMMIT, str(path), str(mosquitto.port), receiver.url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    assert receiver.received == []

    again = await restart_and_deliver(path, mosquitto.port, receiver)
    assert len(again.tickets()) == 1
    assert_sent_once_each(again, receiver)
    again.close()


@pytest.mark.services
async def test_breach_during_downtime_is_reported_after_restart(
    mosquitto: PrivateMosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "service.db"
    store = SqliteStore(path)
    seed(store)
    # Urgent, opened an hour before the last scan: the 2 h respond clock runs out at T0 + 1 h.
    store.put_ticket(ticket("a", at=T0 - hours(1)))
    first = ServiceWorker(settings(mosquitto.port, receiver.url), store, clock=lambda: T0)
    assert await first.scan_breaches() == []
    assert store.cursor(BREACH_CURSOR) == T0
    store.close()  # down from T0 until T0 + 5 h

    store = SqliteStore(path)
    later: Callable[[], datetime] = lambda: T0 + hours(5)  # noqa: E731
    worker = ServiceWorker(settings(mosquitto.port, receiver.url), store, clock=later)
    task = await running(worker)  # the catch-up scan runs before the worker subscribes
    await asyncio.wait_for(worker.drain(), 10)
    await stop(task)
    breached = [b for _, b in receiver.events(EVENT_ID_HEADER)]
    assert breached == [
        {"ticket_id": "a", "clock": "respond", "tier": "urgent", "at": (T0 + hours(1)).isoformat()}
    ]
    assert store.cursor(BREACH_CURSOR) == T0 + hours(5)
    # Scanning again reports nothing twice.
    assert await worker.scan_breaches(T0 + hours(5) + timedelta(seconds=1)) == []
    store.close()


@pytest.mark.services
async def test_gives_up_after_the_last_retry_and_keeps_the_failure(
    mosquitto: PrivateMosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.status = 503
    store = SqliteStore(tmp_path / "service.db")
    seed(store)
    worker = ServiceWorker(settings(mosquitto.port, receiver.url), store)
    task = await running(worker)
    await worker.handle_alert(ALERT)
    await asyncio.wait_for(worker.drain(), 10)
    await stop(task)
    webhooks = [i for i in store.notifications() if i.channel is Channel.WEBHOOK]
    assert len(webhooks) == 2
    for item in webhooks:
        assert item.status is OutboxStatus.FAILED and item.attempts == 3
        assert item.last_error == "HTTP 503"
        tries = [d for d in store.deliveries(item.event_id) if d.url == receiver.url]
        assert [(d.attempt, d.status) for d in tries] == [(1, 503), (2, 503), (3, 503)]
    assert len(receiver.received) == 6  # 2 recipients × 3 attempts, same event id each time
    assert len({e for e, _ in receiver.events(EVENT_ID_HEADER)}) == 2
    mqtt = [i for i in store.notifications() if i.channel is Channel.MQTT]
    assert mqtt and all(i.status is OutboxStatus.DONE for i in mqtt)
    store.close()
