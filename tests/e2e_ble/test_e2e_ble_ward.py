"""Virtual patches → BleAcquisition → Gateway (outbox) → Mosquitto → ingest → TimescaleDB.

Everything is real except the radio: the gateway's bleak code runs against the simulator's
backend, the outbox is SQLite on disk, the broker and the database are private instances.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from bleak.backends.scanner import AdvertisementData

from contract.ble import uuids
from gateway.app import Gateway
from gateway.ble import RejectReason
from gateway.keystore import KeyStore, make_record
from gateway.profiles import ward_profile
from gateway.uplink import UplinkSettings
from simulator.bleak_backend import VirtualBleakClient, VirtualBleakScanner, VirtualRadio, populate
from simulator.fleet import FleetSpec
from tests.e2e_ble.test_e2e_ble_pipeline import (
    assert_stored_exactly,
    auth_failures_expected,
    expected_readings,
    ingesting,
    wait_handed_over,
    wait_stored,
)
from tests.servers import PrivateMosquitto

CONNECTABLE, ADVERTISING = 5, 3  # paired patches; then one unpaired and one re-keyed patch


async def test_patches_to_database_exactly_once_and_attacks_never_stored(
    tmp_path: Path, mosquitto: PrivateMosquitto, timescale_dsn: str
) -> None:
    radio = VirtualRadio()
    patches = populate(radio, FleetSpec(seed=11, patches=CONNECTABLE + ADVERTISING + 2))
    for patch in patches[CONNECTABLE : CONNECTABLE + ADVERTISING]:
        patch.connectable = False
    stranger, rekeyed = patches[-2:]  # a neighbour's patch; a patch re-keyed since pairing
    keys = KeyStore()
    for patch in patches[:-2]:
        keys = keys.pair(make_record(patch.address, patch.key, patch.device_id, "pt-ward-a"))
    keys = keys.pair(make_record(rekeyed.address, os.urandom(16), rekeyed.device_id, "pt-b"))

    profile = ward_profile(
        keys,
        gateway_id="gw-ward-e2e",
        state_dir=tmp_path,
        uplink=UplinkSettings(port=mosquitto.port, linger_s=0.01),
    )
    ble = replace(
        profile.ble,
        wall_poll_s=0.005,
        wall_sweep_s=0.005,
        connect_attempts=1,
        scanner_backend=VirtualBleakScanner.bind(radio),
        client_backend=VirtualBleakClient,
    )
    acquisition = replace(profile, ble=ble).acquisition(clock=radio.monotonic, now_us=radio.now_us)
    counters = acquisition.counters
    injected = {reason: 0 for reason in RejectReason}

    async with (
        ingesting(mosquitto, timescale_dsn) as store,
        Gateway(profile.settings, [acquisition]) as gateway,
    ):
        await radio.play(10.0, step_s=0.5)
        assert acquisition.connected == {p.address for p in patches[:CONNECTABLE]}

        patches[0].replay_next(2)  # a recorded frame re-sent on the link, twice
        injected[RejectReason.REPLAYED] += 2
        await radio.play(5.0, step_s=0.5)

        patches[1].corrupt_next(2)  # tampered frames: the MIC fails
        await radio.play(5.0, step_s=0.5)

        patches[2].impersonate()  # a spoofer at a linked patch's address
        await radio.play(15.0, step_s=0.5)
        assert patches[2].address not in acquisition.connected  # hung up on, not re-linked
        patches[2].restore_key()
        await radio.play(15.0, step_s=0.5)
        assert patches[2].address in acquisition.connected

        passive = patches[CONNECTABLE]
        recorded = passive.current_advert()
        assert recorded is not None
        await radio.play(3.0, step_s=0.5)
        radio.inject(passive.address, recorded)  # an old advert re-broadcast
        injected[RejectReason.REPLAYED] += 1
        radio.inject(passive.address, _forged(recorded))
        injected[RejectReason.AUTH_FAILED] += 1
        radio.inject("C0:FF:EE:00:00:01", recorded)  # someone else's address
        injected[RejectReason.UNKNOWN_DEVICE] += 1
        radio.inject(passive.address, _truncated(recorded))
        injected[RejectReason.MALFORMED] += 1
        radio.drop(patches[3].address)  # a supervision timeout mid-run
        await radio.play(10.0, step_s=0.5)

        await wait_handed_over(acquisition)
        await gateway.drained()
        paired = profile.paired
        expected = expected_readings(patches, paired)
        await wait_stored(store, len(expected))
        stored = store.fetch_readings()

    assert_stored_exactly(stored, expected, max_lag_s=patches[0].measure_every_s)
    # Every patch that was paired with the right key delivered; the others delivered nothing.
    assert {r.device_id for r in stored} == {p.device_id for p in patches[:-2]}
    assert counters.value("vigil_ble_readings_total") == len(stored)
    assert gateway.counters.value("vigil_gateway_readings_in_total", source="all") == len(stored)

    assert counters.rejected(RejectReason.REPLAYED) == injected[RejectReason.REPLAYED]
    assert counters.rejected(RejectReason.MALFORMED) == injected[RejectReason.MALFORMED]
    assert counters.rejected(RejectReason.AUTH_FAILED) == (
        injected[RejectReason.AUTH_FAILED] + auth_failures_expected(patches, paired)
    )
    # BlueZ calls the scanner back once per new advert payload (adverts_heard), not per
    # transmission (adverts_sent).
    assert counters.rejected(RejectReason.UNKNOWN_DEVICE) == (
        injected[RejectReason.UNKNOWN_DEVICE] + stranger.adverts_heard
    )
    assert stranger.adverts_heard > 0 and not any(e.notified for e in rekeyed.emissions)
    # The attacks happened: the formula above is not vacuously zero.
    assert sum(e.corrupted for e in patches[1].emissions) == 2
    assert any(e.notified and e.air_key != patches[2].key for e in patches[2].emissions)
    assert counters.value("vigil_ble_unflushed_total") == 0


def _forged(advert: AdvertisementData) -> AdvertisementData:
    """The same advert with its ciphertext zeroed: a spoofer without the key."""
    data = advert.service_data[uuids.BTHOME_SERVICE_DATA]
    forged = data[:1] + bytes(len(data) - 1)
    return advert._replace(service_data={uuids.BTHOME_SERVICE_DATA: forged})


def _truncated(advert: AdvertisementData) -> AdvertisementData:
    """The advert cut short, as a radio collision might leave it."""
    data = advert.service_data[uuids.BTHOME_SERVICE_DATA]
    return advert._replace(service_data={uuids.BTHOME_SERVICE_DATA: data[:6]})
