"""Runs the real data path in process against a private broker and database, for e2e tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from simulator.fleet import Fleet
from simulator.runner import SimulatedFleet
from tests.waiting import wait_until_async


@dataclass
class Ingesters:
    """Running ingest workers and their stores."""

    workers: list[IngestWorker]
    stores: list[TimescaleStore]

    def stored(self) -> float:
        """Readings stored by all workers together, per their counters."""
        return sum(w.counters.value("vigil_ingest_readings_stored_total") for w in self.workers)


@contextlib.asynccontextmanager
async def ingesters(
    dsn: str, port: int, count: int = 1, shared_group: str | None = None, confirm: bool = True
) -> AsyncIterator[Ingesters]:
    """Start ``count`` ingest workers, each with its own TimescaleDB connection.

    ``confirm=False`` plays an ingest older than delivery confirmations.
    """
    stores = [TimescaleStore(dsn) for _ in range(count)]
    stores[0].migrate()
    workers = [
        IngestWorker(
            IngestSettings(
                port=port, client_id=f"ingest-{i}", shared_group=shared_group, confirm=confirm
            ),
            store,
        )
        for i, store in enumerate(stores)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.subscribed.wait() for w in workers)), 10)
        yield Ingesters(workers, stores)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for store in stores:
            store.close()


async def run_fleet_through_gateway(
    fleet: Fleet, ticks: int, port: int, outbox: Path, gateway_id: str = "gw-e2e"
) -> Gateway:
    """Simulate ``ticks`` of the fleet through a real gateway and wait until all is confirmed."""
    settings = GatewaySettings(
        gateway_id=gateway_id,
        outbox_path=outbox,
        uplink=UplinkSettings(port=port, batch_max_readings=1_000),
        site_broker=SiteBrokerSettings(port=port, site=fleet.spec.site),
    )
    gateway = Gateway(settings)
    assert gateway.bridge is not None
    simulation = SimulatedFleet(
        fleet, ticks, site_broker=("127.0.0.1", port), start_after=gateway.bridge.subscribed
    )
    gateway.sources.insert(0, simulation)
    async with gateway:
        await asyncio.wait_for(gateway.sources_done(), 60)
        # The bridge is fed through the broker: wait until every equipment reading came in.
        await wait_until_async(
            lambda: (
                gateway.counters.value("vigil_gateway_readings_in_total", source="all")
                >= fleet.tally.readings
            ),
            60,
            "every equipment reading bridged",
        )
        await asyncio.wait_for(gateway.drained(), 60)
    return gateway


async def wait_until_stored(group: Ingesters, expected: int) -> None:
    """Wait until the workers report ``expected`` stored readings."""
    await wait_until_async(lambda: group.stored() >= expected, 60, f"{expected} readings stored")


def duplicate_keys(dsn: str) -> int:
    """Reading keys stored more than once (must be 0)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, metric, seq, ts"
            " HAVING count(*) > 1) AS d"
        ).fetchone()
    assert row is not None
    return int(row[0])


def checksum(dsn: str) -> tuple[int, float]:
    """Count and value sum straight from the hypertable."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), coalesce(sum(value), 0) FROM readings").fetchone()
    assert row is not None
    return int(row[0]), float(row[1])
