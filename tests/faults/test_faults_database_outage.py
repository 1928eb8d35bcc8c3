"""PostgreSQL is stopped abruptly under load, then restarted: ingest waits and loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiomqtt
import pytest

from contract import Batch, encode_batch
from contract.topics import batch_topic
from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from infra.telemetry import StorageUnavailable, StoreOutcome
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.faults.harness import expected_patch_readings, wait_until_stored
from tests.servers import PrivateMosquitto, PrivatePostgres, starts_server
from tests.storage.factories import batches
from tests.waiting import wait_until_async

SPEC = FleetSpec(seed=5, patches=60, equipment=0)
TICKS = 200
TICK_WALL_S = 0.02
DOWN_S = 3.0


@pytest.fixture
@starts_server
def postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own: stopping it must not disturb the session-wide one."""
    server = PrivatePostgres(durable=True)
    server.start()
    yield server
    server.cleanup()


@pytest.mark.services
async def test_postgres_stopped_mid_run_loses_and_duplicates_nothing(
    mosquitto: PrivateMosquitto, postgres: PrivatePostgres, tmp_path: Path
) -> None:
    expected = expected_patch_readings(SPEC, TICKS)
    simulation = SimulatedFleet(Fleet(SPEC), TICKS, TICK_WALL_S)
    settings = GatewaySettings(
        gateway_id="gw-db-outage",
        outbox_path=tmp_path / "outbox.db",
        # A short confirmation timeout: the gateway resends into the outage, ingest absorbs it.
        uplink=UplinkSettings(
            port=mosquitto.port,
            batch_max_readings=200,
            confirm_timeout_s=1.0,
            confirm_backoff_max_s=2.0,
        ),
    )
    store = TimescaleStore(postgres.dsn)
    store.migrate()
    worker = IngestWorker(
        IngestSettings(
            port=mosquitto.port,
            client_id="db-outage-ingest",
            storage_backoff_s=0.1,
            storage_backoff_max_s=1.0,
        ),
        store,
    )
    counters = worker.counters
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 15)
        async with Gateway(settings, [simulation]) as gateway:
            await wait_until_async(lambda: simulation.ticks_done >= TICKS // 3, 60, "a third")
            assert counters.value("vigil_ingest_readings_stored_total") > 0
            await asyncio.to_thread(postgres.kill)
            outage_started_at = simulation.ticks_done
            await wait_until_async(
                lambda: counters.value("vigil_ingest_storage_outages_total") >= 1, 60, "outage"
            )
            await asyncio.sleep(DOWN_S)  # a deliberate gap: the database outage it simulates
            assert not task.done(), "ingest died with the database"
            assert counters.value("vigil_ingest_storage_unavailable") == 1
            assert simulation.ticks_done > outage_started_at  # the gateway kept producing
            await asyncio.to_thread(postgres.start)
            await asyncio.wait_for(gateway.sources_done(), 60)
            await asyncio.wait_for(gateway.drained(), 60)
        tally = await wait_until_stored(postgres.dsn, expected.count)
        await asyncio.sleep(0.5)  # a deliberate gap: a late duplicate would land in it
        tally = await wait_until_stored(postgres.dsn, expected.count)
        assert not task.done(), "ingest died after the database came back"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()

    retries = counters.value("vigil_ingest_storage_retries_total")
    print(
        f"storage retries {retries:.0f}; duplicate batches absorbed "
        f"{counters.value('vigil_ingest_batches_duplicate_total'):.0f}"
    )
    assert counters.value("vigil_ingest_storage_outages_total") >= 1
    assert retries >= 1
    assert counters.value("vigil_ingest_storage_unavailable") == 0
    assert tally.count == expected.count, "readings lost"
    assert math.isclose(tally.value_sum, expected.value_sum, rel_tol=1e-12)
    assert tally.duplicate_keys == 0
    # Each reading reached storage in exactly one claimed batch: resends were whole-batch dups.
    assert tally.batch_readings == expected.count


class FlakyStore(SQLiteStore):
    """An in-memory store whose first ``failures`` batch writes find the database down."""

    def __init__(self, failures: int) -> None:
        super().__init__(":memory:")
        self.failures = failures
        self.attempts = 0

    def store_batches(self, batches: Sequence[Batch]) -> StoreOutcome:
        """Fail while ``failures`` lasts, then store."""
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageUnavailable("database restarting")
        return super().store_batches(batches)


async def test_handle_retries_the_same_write_with_backoff_until_it_commits() -> None:
    store = FlakyStore(failures=3)
    store.migrate()
    worker = IngestWorker(IngestSettings(storage_backoff_s=0.01, storage_backoff_max_s=0.02), store)
    sent = batches(2, 5, gateway_id="gw-flaky")
    messages = [
        aiomqtt.Message(batch_topic("gw-flaky"), encode_batch(b), 1, False, i, None)
        for i, b in enumerate(sent)
    ]
    confirmations = await worker.handle(messages)

    assert [(c.gateway_id, list(c.batch_seqs)) for c in confirmations] == [("gw-flaky", [0, 1])]
    assert store.attempts == 4 and store.reading_count() == 10
    c = worker.counters
    assert c.value("vigil_ingest_storage_outages_total") == 1
    assert c.value("vigil_ingest_storage_retries_total") == 3
    assert c.value("vigil_ingest_storage_unavailable") == 0
    # Decoded and counted once, however often the write was retried.
    assert c.value("vigil_ingest_messages_total") == 2
    assert c.value("vigil_ingest_readings_stored_total") == 10
