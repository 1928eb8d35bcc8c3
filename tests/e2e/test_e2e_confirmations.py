"""A gateway facing an ingest that does not confirm (an older version): loud, bounded, no loss."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from pathlib import Path

import pytest

from contract.topics import confirm_topic
from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from simulator.fleet import Fleet, FleetSpec
from tests.e2e.pipeline import checksum, duplicate_keys, ingesters, wait_until_stored
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services


async def test_non_confirming_ingest_is_warned_about_then_puback_mode_drains(
    mosquitto: PrivateMosquitto,
    timescale_dsn: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    fleet = Fleet(FleetSpec(seed=4, patches=20, equipment=0))
    readings = [r for tick in range(10) for r in fleet.patch_readings(tick)]
    uplink = UplinkSettings(
        port=mosquitto.port,
        batch_max_readings=100,
        linger_s=0.01,
        confirm_timeout_s=0.5,
        max_unconfirmed=8,
    )
    settings = GatewaySettings(
        gateway_id="gw-legacy", outbox_path=tmp_path / "outbox.db", uplink=uplink
    )
    async with ingesters(timescale_dsn, mosquitto.port, confirm=False) as group:
        async with Gateway(settings) as gateway:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await gateway.accept(readings)

            def resent() -> float:
                return gateway.counters.value("vigil_gateway_batches_resent_on_timeout_total")

            # Nothing is ever confirmed: the gateway must hold its 8 batches and back off
            # its resends, however long ingest takes to store what it was sent.
            await wait_until_async(lambda: group.stored() == 800, 60, "8 batches stored")
            await wait_until_async(lambda: resent() >= 8, 30, "every open batch resent")
            stats, times_resent = gateway.outbox.stats(), resent()
            elapsed = loop.time() - started
            # Stored, but never confirmed: nothing is forgotten, and no more than 8 batches
            # (of 12) went out: the broker is not flooded.
            assert (stats.open_batches, stats.pending_readings) == (8, len(readings))
            assert group.stored() == 800
            # Resent after 0.5, 1.5, 3.5, 7.5 s …: backing off, not spinning — each batch at
            # most once per doubling of the timeout in the time that has passed.
            rounds = math.floor(math.log2(elapsed / uplink.confirm_timeout_s + 1))
            assert 8 <= times_resent <= 8 * rounds, (times_resent, elapsed)
        warning = next(
            r.getMessage() for r in caplog.records if "no confirmation" in r.getMessage()
        )
        assert confirm_topic("gw-legacy") in warning and "require_confirmation" in warning

        # The documented way out: run this gateway on broker PUBACKs.
        puback = replace(settings, uplink=replace(uplink, require_confirmation=False))
        async with Gateway(puback) as gateway:
            await asyncio.wait_for(gateway.drained(), 30)
        await wait_until_stored(group, len(readings))
        await asyncio.sleep(0.3)  # a deliberate gap: a duplicate would land in it
    count, value_sum = checksum(timescale_dsn)
    assert count == len(readings) == fleet.tally.readings
    assert value_sum == pytest.approx(fleet.tally.value_sum, rel=1e-12)
    assert duplicate_keys(timescale_dsn) == 0
