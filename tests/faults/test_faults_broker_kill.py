"""The uplink broker is SIGKILLed under load and restarted: every reading lands exactly once."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.faults.harness import expected_patch_readings, running_ingest, wait_until_stored
from tests.servers import PrivateMosquitto

SPEC = FleetSpec(seed=3, patches=60, equipment=0)
TICKS = 150
TICK_WALL_S = 0.02

pytestmark = pytest.mark.services


@pytest.mark.xfail(strict=False, reason=(
    "known hole: the gateway deletes a batch on the broker's PUBACK, but Mosquitto persists "
    "only every autosave_interval (1 s), so a SIGKILL can lose batches it had acknowledged "
    "and not yet delivered; seen as 600 of 54,000 lost in 1 of 4 runs"))
async def test_broker_sigkill_under_load_loses_and_duplicates_nothing(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    expected = expected_patch_readings(SPEC, TICKS)
    simulation = SimulatedFleet(Fleet(SPEC), TICKS, TICK_WALL_S)
    settings = GatewaySettings(
        gateway_id="gw-broker-kill", outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=mosquitto.port, batch_max_readings=200,
                              reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.5),
    )
    async with running_ingest(mosquitto.port, timescale_dsn) as ingest, \
            Gateway(settings, [simulation]) as gateway:
        while True:  # a third of the load produced, under way
            if simulation.ticks_done >= TICKS // 3:
                break
            await asyncio.sleep(0.02)
        assert ingest.worker.counters.value("vigil_ingest_readings_stored_total") > 0
        mosquitto.kill()
        outage_started_at = simulation.ticks_done
        await asyncio.sleep(1.5)  # the gateway keeps producing into its outbox meanwhile
        assert simulation.ticks_done > outage_started_at
        mosquitto.start()
        await asyncio.wait_for(gateway.sources_done(), 60)
        await asyncio.wait_for(gateway.drained(), 60)
        tally = await wait_until_stored(timescale_dsn, expected.count)
        assert gateway.counters.value("vigil_gateway_uplink_reconnects_total") >= 1

    print(f"ingest restarts by supervisor: {ingest.restarts}")
    assert tally.count == expected.count, "readings lost"
    assert math.isclose(tally.value_sum, expected.value_sum, rel_tol=1e-12)
    assert tally.duplicate_keys == 0
    # Each reading reached storage in exactly one claimed batch: resends were whole-batch dups.
    assert tally.batch_readings == expected.count

