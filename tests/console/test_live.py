"""The live feed: one watcher per process, fan-out to every subscriber, scoped streams."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from infra.telemetry import open_store
from service.api.context import Telemetry
from service.api.schemas import Principal, Role
from service.console.live import QUEUE, Change, LiveHub
from service.console.live_routes import concerns, stream
from service.console.watch import LOOKBACK, StoreWatcher
from service.store import SqliteStore
from tests.console import seed
from tests.waiting import wait_until_async


async def test_one_watcher_feeds_every_subscriber_and_stops_with_the_last() -> None:
    polls: list[int] = []

    def probe() -> list[Change]:
        polls.append(1)
        return [Change("alert", frozenset({"s1"}))] if len(polls) == 2 else []

    hub = LiveHub(probe, interval_s=0.01)
    async with hub.subscribe() as a, hub.subscribe() as b:
        first = await asyncio.wait_for(a.get(), 5)
        second = await asyncio.wait_for(b.get(), 5)
        assert first == second == Change("alert", frozenset({"s1"}))
        assert hub.subscribers == 2
        assert hub.watching
    assert hub.subscribers == 0
    assert not hub.watching  # the watcher ended with the last subscriber


async def test_a_slow_subscriber_loses_changes_not_memory() -> None:
    hub = LiveHub(None)
    async with hub.subscribe() as queue:
        for _ in range(QUEUE * 3):
            hub.publish(Change("ticket"))
        assert queue.qsize() == QUEUE


async def test_a_failing_store_does_not_end_the_feed() -> None:
    calls: list[int] = []

    def probe() -> list[Change]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("database is locked")
        return [Change("ticket")] if len(calls) == 2 else []

    hub = LiveHub(probe, interval_s=0.01)
    async with hub.subscribe() as queue:
        assert await asyncio.wait_for(queue.get(), 5) == Change("ticket")


def test_changes_reach_only_the_callers_in_scope() -> None:
    change = Change("alert", frozenset({"s1"}), frozenset({"d1"}), frozenset({"p1"}))
    assert concerns(Principal(role=Role.ADMIN), change)
    assert concerns(Principal(role=Role.ENGINEER, subject="e1"), change)
    assert concerns(Principal(role=Role.HOSPITAL, subject="s1"), change)
    assert not concerns(Principal(role=Role.HOSPITAL, subject="s2"), change)
    assert concerns(Principal(role=Role.PATIENT, subject="p1"), change)
    assert not concerns(Principal(role=Role.PATIENT, subject="p2"), change)
    assert not concerns(Principal(role=Role.HOSPITAL), change)


async def test_a_stream_sends_events_in_scope_only() -> None:
    hub = LiveHub(None)
    lines = stream(hub, Principal(role=Role.HOSPITAL, subject="s1"))
    assert await anext(lines) == "retry: 2000\n\n"
    pending = asyncio.ensure_future(anext(lines))
    await wait_until_async(lambda: hub.subscribers == 1, 5, "the stream to subscribe")
    hub.publish(Change("alert", frozenset({"s2"})))
    hub.publish(Change("ack", frozenset({"s1"})))
    assert await asyncio.wait_for(pending, 5) == "event: ack\ndata: ack\n\n"
    await lines.aclose()


@pytest.fixture
def stores() -> tuple[SqliteStore, Telemetry, object]:
    store = SqliteStore(":memory:")
    readings = open_store("sqlite:///:memory:")
    seed.seed(store, readings, seed.when())
    return store, Telemetry(readings), readings


def test_the_watcher_notices_new_alerts_and_tickets_by_site(
    stores: tuple[SqliteStore, Telemetry, object],
) -> None:
    store, telemetry, readings = stores
    watcher = StoreWatcher(store, telemetry, lambda: datetime.now(UTC))
    assert watcher() == []  # the first poll notes where the stores stand
    now = datetime.now(UTC)
    seed.raise_alert(store, readings, seed.infection(seed.INFECTED, now), now)  # type: ignore[arg-type]
    changes = {c.kind: c for c in watcher()}
    assert set(changes) == {"alert", "ticket"}
    assert changes["alert"].sites == frozenset({seed.SITE})
    assert changes["alert"].devices == frozenset({seed.INFECTED})
    assert changes["ticket"].patients == frozenset({"p3"})
    assert watcher() == []  # each change is told once


def test_late_and_out_of_order_alerts_are_told_once(
    stores: tuple[SqliteStore, Telemetry, object],
) -> None:
    store, telemetry, readings = stores
    now = datetime.now(UTC)
    seed.raise_alert(store, readings, seed.infection("patch-w101", now), now)  # type: ignore[arg-type]
    watcher = StoreWatcher(store, telemetry, lambda: datetime.now(UTC))
    assert watcher() == []  # what was there before the feed started is not news
    seed.raise_alert(store, readings, seed.infection("patch-w102", now), now)  # type: ignore[arg-type]
    assert {c.kind for c in watcher()} == {"alert", "ticket"}
    # An alert stamped before the newest one told, arriving later (a lagging gateway).
    late = now - timedelta(seconds=40)
    seed.raise_alert(store, readings, seed.infection("patch-w201", late), now)  # type: ignore[arg-type]
    changes = {c.kind: c for c in watcher()}
    assert changes["alert"].devices == frozenset({"patch-w201"})
    assert watcher() == []
    # Far too late (outside the look-back): not pushed; a reload shows it.
    stale = now - LOOKBACK - timedelta(minutes=5)
    readings.store_alert_events([seed.infection("patch-h01", stale)])  # type: ignore[attr-defined]
    assert watcher() == []
