"""Open tickets by tier and state, and breached clocks, from one SQL aggregate (SQLite and
PostgreSQL), exported at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from infra.metrics import FunctionCollector
from service.lifecycle import Resolve
from service.metrics import ticket_metrics
from service.model import Tier
from service.store import ServiceStore, open_service_store
from tests.servers import PrivatePostgres
from tests.service.factories import T0, accepted, device, hours, on_site, ticket, walk
from tests.service.live import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    if request.param == "sqlite":
        opened = open_service_store(f"sqlite:///{tmp_path / 'service.db'}")
        yield opened
        opened.close()
        return
    server: PrivatePostgres = request.getfixturevalue("postgres_server")
    with fresh_database(server) as dsn:
        opened = open_service_store(dsn)
        yield opened
        opened.close()


def _scraped(store: ServiceStore, hours_after: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    now = T0 + hours(hours_after)
    registry.register(FunctionCollector("tickets", lambda: ticket_metrics(store, now)))
    return registry


def test_open_tickets_by_tier_and_state_and_their_breached_clocks(store: ServiceStore) -> None:
    store.put_device(device("d1"))
    store.put_ticket(ticket("a", tier=Tier.URGENT))  # respond due T0+2h, resolve T0+24h
    store.put_ticket(accepted(ticket("b", tier=Tier.URGENT), T0 + hours(1)))  # responded in time
    resolved = walk(on_site(ticket("c", tier=Tier.GENERAL), T0), (Resolve("fixed"), T0))
    store.put_ticket(resolved)  # not open: not counted
    store.put_ticket(ticket("d", tier=Tier.GENERAL, at=T0 + hours(2)))  # respond due T0+6h

    early = _scraped(store, 3)
    value = early.get_sample_value
    assert value("vigil_service_open_tickets", {"tier": "urgent", "state": "open"}) == 1
    assert value("vigil_service_open_tickets", {"tier": "urgent", "state": "accepted"}) == 1
    assert value("vigil_service_open_tickets", {"tier": "general", "state": "open"}) == 1
    assert value("vigil_service_open_tickets", {"tier": "general", "state": "resolved"}) is None
    breached = "vigil_service_breached_open_tickets"
    assert value(breached, {"tier": "urgent", "clock": "respond"}) == 1
    assert value(breached, {"tier": "urgent", "clock": "resolve"}) == 0
    assert value(breached, {"tier": "general", "clock": "respond"}) == 0

    late = _scraped(store, 30).get_sample_value
    assert late(breached, {"tier": "urgent", "clock": "respond"}) == 1  # b responded in time
    assert late(breached, {"tier": "urgent", "clock": "resolve"}) == 2
    assert late(breached, {"tier": "general", "clock": "respond"}) == 1
