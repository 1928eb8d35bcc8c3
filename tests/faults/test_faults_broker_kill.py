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
from tests.waiting import wait_until_async

SPEC = FleetSpec(seed=3, patches=60, equipment=0)
TICKS = 200
TICK_WALL_S = 0.02

pytestmark = pytest.mark.services


async def test_broker_sigkill_under_load_loses_and_duplicates_nothing(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    expected = expected_patch_readings(SPEC, TICKS)
    simulation = SimulatedFleet(Fleet(SPEC), TICKS, TICK_WALL_S)
    settings = GatewaySettings(
        gateway_id="gw-broker-kill",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(
            port=mosquitto.port,
            batch_max_readings=200,
            reconnect_backoff_s=0.1,
            reconnect_backoff_max_s=0.5,
        ),
    )
    async with (
        running_ingest(mosquitto.port, timescale_dsn) as ingest,
        Gateway(settings, [simulation]) as gateway,
    ):
        await wait_until_async(
            lambda: simulation.ticks_done >= TICKS // 3, 60, "a third of the load produced"
        )
        assert ingest.worker.counters.value("vigil_ingest_readings_stored_total") > 0
        mosquitto.kill()
        outage_started_at = simulation.ticks_done
        # A deliberate gap: the outage the test simulates; the gateway keeps producing into
        # its outbox meanwhile.
        await asyncio.sleep(1.5)
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


async def test_broker_sigkill_while_ingest_is_offline_loses_and_duplicates_nothing(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    # With ingest offline the broker holds every batch it acknowledged, and a SIGKILL loses
    # whatever it had not yet saved: only the gateway's copy, kept until confirmed, survives.
    expected = expected_patch_readings(SPEC, TICKS)
    simulation = SimulatedFleet(Fleet(SPEC), TICKS, TICK_WALL_S)
    settings = GatewaySettings(
        gateway_id="gw-broker-kill-offline",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(
            port=mosquitto.port,
            batch_max_readings=200,
            reconnect_backoff_s=0.1,
            reconnect_backoff_max_s=0.5,
            confirm_timeout_s=1.0,
            max_unconfirmed=40,
        ),
    )
    acked = "vigil_gateway_batches_acked_total"
    async with Gateway(settings, [simulation]) as gateway:
        async with running_ingest(mosquitto.port, timescale_dsn) as ingest:
            await wait_until_async(lambda: simulation.ticks_done >= TICKS // 4, 60, "a quarter")
            assert ingest.worker.counters.value("vigil_ingest_readings_stored_total") > 0
        # Ingest is gone (its persistent session stays): batches now queue on the broker.
        offline_from = gateway.counters.value(acked)
        await wait_until_async(
            lambda: gateway.counters.value(acked) >= offline_from + 10, 60, "10 batches queued"
        )
        # Kill within the autosave interval of a PUBACK: that batch is not on the broker's disk.
        latest = gateway.counters.value(acked)
        await wait_until_async(
            lambda: gateway.counters.value(acked) > latest, 60, "a fresh PUBACK", poll_s=0.005
        )
        at_risk = sum(
            1 for s in gateway.outbox.open_batch_states() if s.published_at_us is not None
        )
        resent = "vigil_gateway_batches_resent_on_timeout_total"
        resent_before = gateway.counters.value(resent)
        mosquitto.kill()
        await asyncio.sleep(1.0)  # a deliberate gap: the broker outage the test simulates
        mosquitto.start()
        await asyncio.wait_for(gateway.sources_done(), 60)
        # Ingest still offline: unconfirmed batches time out and are resent into the broker.
        await wait_until_async(
            lambda: gateway.counters.value(resent) > resent_before, 60, "a resend on timeout"
        )
        stats = gateway.outbox.stats()
        assert stats.pending_readings > 0 and stats.open_batches <= 40
        resent_on_timeout = gateway.counters.value(resent)
        async with running_ingest(mosquitto.port, timescale_dsn) as ingest:
            await asyncio.wait_for(gateway.drained(), 120)
            tally = await wait_until_stored(timescale_dsn, expected.count)
            duplicates = ingest.worker.counters.value("vigil_ingest_batches_duplicate_total")
        assert gateway.counters.value("vigil_gateway_uplink_reconnects_total") >= 1

    print(
        f"published, unconfirmed at the kill: {at_risk} batches; resent on timeout "
        f"{resent_on_timeout:.0f}; duplicates absorbed by ingest {duplicates:.0f}"
    )
    assert tally.count == expected.count, "readings lost"
    assert math.isclose(tally.value_sum, expected.value_sum, rel_tol=1e-12)
    assert tally.duplicate_keys == 0
    assert tally.batch_readings == expected.count
