"""One reading travels simulator → gateway → Mosquitto → ingest → TimescaleDB, exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from contract import Batch, Reading, encode_batch
from contract.topics import batch_topic
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
from tests.e2e.pipeline import (
    checksum,
    duplicate_keys,
    ingesters,
    run_fleet_through_gateway,
    wait_until_stored,
)
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services

FLEET = FleetSpec(
    seed=11,
    patches=50,
    equipment=5,
    faults=(
        Fault("patch-0002", FaultKind.INFECTION, 600),
        Fault("us-000", FaultKind.MAINS_SAG, 900),
    ),
)
TICKS = 40


async def test_fleet_lands_exactly_once(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    fleet = Fleet(FLEET)
    async with ingesters(timescale_dsn, mosquitto.port) as group:
        await run_fleet_through_gateway(fleet, TICKS, mosquitto.port, tmp_path / "outbox.db")
        await wait_until_stored(group, fleet.tally.readings)
        await asyncio.sleep(0.3)  # a deliberate gap: anything extra (a duplicate) would land now
    # 50 patches x 6 metrics + 5 equipment x 5 metrics, every tick.
    assert fleet.tally.readings == TICKS * (50 * 6 + 5 * 5)
    count, value_sum = checksum(timescale_dsn)
    assert count == fleet.tally.readings
    assert value_sum == pytest.approx(fleet.tally.value_sum, rel=1e-12)
    assert duplicate_keys(timescale_dsn) == 0


async def test_redelivery_adds_nothing_and_malformed_goes_to_dead_letters(
    mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    readings = tuple(
        Reading(f"patch-{d:04d}", "wound_ph", 6.5 + d / 100, "pH", 1_767_225_600_000_000 + s, s)
        for d in range(10)
        for s in range(100)
    )
    batches = [Batch("gw-re", i, readings[i * 100 : (i + 1) * 100]) for i in range(10)]
    async with (
        ingesters(timescale_dsn, mosquitto.port) as group,
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="redeliverer") as client,
    ):
        for batch in batches:
            await client.publish(batch_topic("gw-re"), encode_batch(batch), qos=1)
        await wait_until_stored(group, 1_000)
        # The same batches again (a gateway resend), then garbage, then one more good batch.
        for batch in batches:
            await client.publish(batch_topic("gw-re"), encode_batch(batch), qos=1)
        await client.publish(batch_topic("gw-re"), b"\x00not json", qos=1)
        await client.publish(batch_topic("gw-re"), b'{"v": 9}', qos=1)
        extra = Batch(
            "gw-re", 99, (Reading("patch-0042", "battery", 80.0, "%", 1_767_225_600_000_000, 1),)
        )
        await client.publish(batch_topic("gw-re"), encode_batch(extra), qos=1)
        await wait_until_stored(group, 1_001)
        worker = group.workers[0]
        await wait_until_async(
            lambda: worker.counters.value("vigil_ingest_batches_duplicate_total") >= 10,
            60,
            "ten duplicates absorbed",
        )
        assert worker.counters.value("vigil_ingest_dead_letters_total", kind="payload") == 2
        store = group.stores[0]
        assert store.dead_letter_count() == 2
        reasons = [letter.reason for letter in store.dead_letters()]
        assert any("v" in reason for reason in reasons)
    assert checksum(timescale_dsn)[0] == 1_001
    assert duplicate_keys(timescale_dsn) == 0


async def test_two_workers_share_the_load_exactly_once(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    fleet = Fleet(FleetSpec(seed=5, patches=50, equipment=5))
    async with ingesters(timescale_dsn, mosquitto.port, count=2, shared_group="ingest") as group:
        await run_fleet_through_gateway(fleet, 60, mosquitto.port, tmp_path / "outbox.db")
        await wait_until_stored(group, fleet.tally.readings)
        await asyncio.sleep(0.3)  # a deliberate gap: anything extra (a duplicate) would land now
        per_worker = [w.counters.value("vigil_ingest_messages_total") for w in group.workers]
    assert all(n > 0 for n in per_worker), per_worker  # both took a share
    count, value_sum = checksum(timescale_dsn)
    assert count == fleet.tally.readings
    assert value_sum == pytest.approx(fleet.tally.value_sum, rel=1e-12)
    assert duplicate_keys(timescale_dsn) == 0
