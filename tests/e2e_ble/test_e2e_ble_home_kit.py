"""A home kit offline for two simulated weeks: nothing lost, nothing doubled once it is back.

One patient's two patches (and a neighbour's patch on the air) → a home-kit gateway whose
uplink broker is down; half-way the kit restarts (a phone rebooting) and a patch reboots; then
the broker comes back and every reading reaches TimescaleDB exactly once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.ble import BleAcquisition, RejectReason
from gateway.keystore import KeyStore, make_record
from gateway.profiles import GatewayProfile, ProfileKind, home_kit_profile
from simulator.bleak_backend import (
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec
from tests.e2e_ble.test_e2e_ble_pipeline import (
    assert_stored_exactly,
    expected_readings,
    ingesting,
    wait_handed_over,
    wait_stored,
)
from tests.servers import PrivateMosquitto, starts_server
from tests.waiting import wait_until_async

OFFLINE_DAYS = float(os.environ.get("VIGIL_KIT_DAYS", "14"))
MEASURE_EVERY_S = 60.0  # what the kit's patches are set to at pairing
STEP_S = 300.0  # simulated seconds per radio step: five measurements per patch


@pytest.fixture
@starts_server
def durable_broker() -> Iterator[PrivateMosquitto]:
    """A private broker whose persistence works: started as root, mosquitto drops to its own
    user, which cannot write the 0700 temp dir of the shared fixture (sessions would vanish)."""
    workdir = Path(tempfile.mkdtemp(prefix="vigil-mqtt-kit-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "mosquitto")
    broker = PrivateMosquitto(workdir)
    broker.start()
    yield broker
    broker.cleanup()


def kit_world() -> tuple[VirtualRadio, list[VirtualPatch], KeyStore]:
    """Two patches of patient pt-a, one of a neighbour pt-b, all paired in one key file."""
    radio = VirtualRadio()
    patches = populate(
        radio,
        FleetSpec(seed=23, patches=3),
        measure_every_s=MEASURE_EVERY_S,
        advert_every_s=10.0,
        history=30_000,
    )
    keys = KeyStore()
    for patch, patient in zip(patches, ["pt-a", "pt-a", "pt-b"], strict=True):
        keys = keys.pair(make_record(patch.address, patch.key, patch.device_id, patient))
    return radio, patches, keys


def simulated(profile: GatewayProfile, radio: VirtualRadio, port: int) -> GatewayProfile:
    """The profile with its wall-clock knobs shortened and the radio as its BLE stack."""
    ble = replace(
        profile.ble,
        wall_poll_s=0.005,
        wall_sweep_s=0.005,
        adapter_poll_s=0.01,
        connect_attempts=1,
        # Simulated time jumps STEP_S between two turns of the connect queue: a queued connect
        # must outlive a step (on the wall clock, 10 s is plenty).
        candidate_ttl_s=2 * STEP_S,
        scanner_backend=VirtualBleakScanner.bind(radio),
        client_backend=VirtualBleakClient,
    )
    uplink = replace(profile.settings.uplink, port=port, linger_s=0.05, reconnect_backoff_max_s=1.0)
    return replace(profile, ble=ble, settings=replace(profile.settings, uplink=uplink))


async def test_two_weeks_offline_then_everything_arrives_exactly_once(
    tmp_path: Path, durable_broker: PrivateMosquitto, timescale_dsn: str
) -> None:
    mosquitto = durable_broker
    radio, patches, keys = kit_world()
    mine, neighbour = patches[:2], patches[2]
    kit = home_kit_profile(
        keys,
        "pt-a",
        gateway_id="kit-e2e",
        state_dir=tmp_path,
        offline_days=OFFLINE_DAYS,
        measure_every_s=MEASURE_EVERY_S,
    )
    assert kit.kind is ProfileKind.HOME_KIT and kit.settings.site_broker is None
    assert {p.address for p in kit.paired} == {p.address for p in mine}
    profile = simulated(kit, radio, mosquitto.port)
    half_s = OFFLINE_DAYS * 86_400 / 2
    acquisitions: list[BleAcquisition] = []

    # Ingest's persistent session exists before the outage, so nothing published is unheard.
    async with ingesting(mosquitto, timescale_dsn, client_id="ingest-kit"):
        pass
    mosquitto.stop()

    # First week offline, then the kit restarts (cancel: queued readings go to the outbox).
    acquisitions.append(profile.acquisition(clock=radio.monotonic, now_us=radio.now_us))
    async with Gateway(profile.settings, acquisitions[-1:]):
        # The scanner listens before simulated time runs.
        await wait_until_async(lambda: acquisitions[-1].scanning, 10, "the BLE scanner")
        await radio.play(half_s, step_s=STEP_S)
        assert acquisitions[0].connected == {p.address for p in mine}
    mine[0].reboot()  # and a patch power-cycles while nobody listens

    acquisitions.append(profile.acquisition(clock=radio.monotonic, now_us=radio.now_us))
    async with Gateway(profile.settings, acquisitions[-1:]) as gateway:
        await wait_until_async(lambda: acquisitions[-1].scanning, 10, "the BLE scanner")
        await radio.play(half_s, step_s=STEP_S)
        await wait_handed_over(acquisitions[1])
        expected = expected_readings(patches, kit.paired)
        stats = await asyncio.to_thread(gateway.outbox.stats)
        assert stats.pending_readings == len(expected)  # all of it waited on disk
        assert stats.dropped_readings == 0
        assert stats.pending_readings <= kit.settings.outbox_max_readings
        assert not gateway.uplink.connected.is_set()

        mosquitto.start()
        async with ingesting(mosquitto, timescale_dsn, client_id="ingest-kit") as store:
            # Drained now means confirmed as stored, so ingest must be back first.
            await asyncio.wait_for(gateway.drained(), 120.0)
            await wait_stored(store, len(expected), timeout_s=120.0)
            stored = await asyncio.to_thread(store.fetch_readings)

    assert_stored_exactly(stored, expected, max_lag_s=MEASURE_EVERY_S)
    produced = sum(len(p.emissions) for p in mine)
    assert produced >= 2 * OFFLINE_DAYS * 86_400 / MEASURE_EVERY_S - 2
    # Nearly every measurement was heard: linked patches notify whether or not the scan window
    # is open. The few gaps are measurements taken while a link was being set up (linked, so
    # not advertising, but not yet subscribed): the profile's normal counter gaps.
    for patch in mine:
        heard = {s for d, _, s in expected if d == patch.device_id}
        assert heard <= {e.counter for e in patch.emissions}
        assert len(heard) >= len(patch.emissions) - 10, patch.device_id
    rebooted = [e for e in mine[0].emissions if e.frame.status & 0x10]
    assert len(rebooted) == 1 and rebooted[0].counter % 256 == 0
    for acquisition in acquisitions:
        counters = acquisition.counters
        assert counters.value("vigil_ble_unflushed_total") == 0
        assert counters.rejected(RejectReason.REPLAYED) == 0
        assert counters.rejected(RejectReason.AUTH_FAILED) == 0
        assert acquisition.peak_links <= 2
    # The neighbour's patch is paired, but to another patient: this kit treats it as unknown.
    assert neighbour.device_id not in {r.device_id for r in stored}
    assert sum(a.counters.rejected(RejectReason.UNKNOWN_DEVICE) for a in acquisitions) > 0
