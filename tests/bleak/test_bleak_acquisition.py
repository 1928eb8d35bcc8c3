"""The gateway's real bleak code path against virtual patches: readings, links, slots."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from contract.ble.frame import PatchFlags
from contract.reading import Reading, check_reading
from gateway.ble import BleAcquisition, RejectReason
from gateway.source import ReadingSource
from simulator.bleak_backend import (
    Emission,
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec
from tests.bleak.test_bleak_harness import FAST, Harness, paired, running


def sent(patch: VirtualPatch) -> dict[int, Emission]:
    """Authentic measurements the patch put on the air (notified or advertised), by counter."""
    return {e.counter: e for e in patch.emissions if e.authentic and (e.notified or e.advertised)}


def assert_matches_physiology(h: Harness, patch: VirtualPatch) -> None:
    """Every delivered reading is one the patch sent, with the value its model produced."""
    emissions = sent(patch)
    readings = h.of(patch)
    assert {r.seq for r in readings} == set(emissions), patch.device_id
    for r in readings:
        check_reading(r)
        e = emissions[r.seq]
        s = e.sample
        expected = {
            "wound_ph": s.wound_ph,
            "wound_temp": s.wound_temp,
            "skin_temp": s.skin_temp,
            "battery": float(round(s.battery)),
            "status_flags": float(int(e.frame.status)),
        }
        if r.metric == "exudate":
            assert abs(r.value - s.exudate) <= 0.25  # frames carry 0.5 % steps
        else:
            assert r.value == expected[r.metric], (r, s)
        # Stamped on receipt: at the notification, or the first advert after the measurement.
        assert 0 <= r.ts_us - e.ts_us <= patch.advert_every_s * 1e6


def keys(readings: list[Reading]) -> list[tuple[str, str, int, int]]:
    return [r.key for r in readings]


async def test_acquisition_is_a_reading_source() -> None:
    async with running(1) as h:
        source: ReadingSource = h.acquisition
        assert source.name == "ble"


async def test_connected_and_passive_patches_deliver_what_they_measured() -> None:
    async with running(6, connectable=3) as h:
        await h.play(20.0)
        connected = h.acquisition.connected
        assert len(connected) == 3 and h.radio.connected == 3
        for patch in h.patches:
            assert_matches_physiology(h, patch)
            assert h.of(patch, "wound_temp")
        for patch in h.patches[:3]:
            # Only frames carry pH and the status byte; passive adverts cannot.
            assert h.of(patch, "wound_ph") and h.of(patch, "status_flags")
            assert any(e.notified for e in patch.emissions)
        for patch in h.patches[3:]:
            assert not h.of(patch, "wound_ph") and patch.address not in connected
        assert len(keys(h.delivered)) == len(set(keys(h.delivered)))  # no duplicates
        assert h.acquisition.counters.accepted("notify") > 0
        assert h.acquisition.counters.accepted("advert") > 0
        assert sum(h.acquisition.counters.rejected(r) for r in RejectReason) == 0


async def test_device_information_and_battery_are_read_once_then_on_schedule() -> None:
    config = replace(FAST, battery_every_s=10.0)
    async with running(2, config=config) as h:
        await h.play(3.0)
        acq = h.acquisition
        for patch in h.patches:
            info = acq.device_info[patch.address]
            assert info.serial_number == f"SN-{patch.device_id}"
            assert info.model_number == "VGL-PATCH-1"
        first = {a: b.at for a, b in acq.battery.items()}
        assert set(first) == {p.address for p in h.patches}
        await h.play(4.0)
        assert {a: b.at for a, b in acq.battery.items()} == first  # not due yet
        await h.play(8.0)
        assert all(acq.battery[a].at > first[a] for a in first)
        assert acq.battery[h.patches[0].address].percent == round(
            h.patches[0].emissions[-1].sample.battery
        )


async def test_drop_then_reconnect_loses_nothing() -> None:
    async with running(2) as h:
        await h.play(5.0)
        patch = h.patches[0]
        assert patch.address in h.acquisition.connected
        h.radio.drop(patch.address)
        await h.play(1.0)  # the patch advertises again at once; reconnect waits 2 s
        assert patch.address not in h.acquisition.connected
        assert h.acquisition.counters.value("vigil_ble_drops_total") == 1
        await h.play(6.0)
        assert patch.address in h.acquisition.connected
        assert h.acquisition.counters.value("vigil_ble_connects_total") == 3
        # While unlinked its measurements came in through adverts: the counters have no gap.
        seqs = sorted({r.seq for r in h.of(patch)})
        assert seqs == list(range(seqs[0], seqs[-1] + 1))
        assert any(e.advertised for e in patch.emissions if e.counter > 5)
        assert_matches_physiology(h, patch)


async def test_never_more_links_than_slots_and_everyone_still_reports() -> None:
    config = replace(FAST, max_connections=3)
    async with running(12, config=config) as h:
        h.radio.connect_latency_s = 0.005  # links take time, so slots are contended
        for _ in range(5):
            await h.play(3.0)
            assert h.radio.connected <= 3
            # Free slots circulate: hang up two patches, others may take their slots.
            for address in list(h.radio.links)[:2]:
                h.radio.drop(address)
        assert h.radio.peak_connections == 3
        assert h.acquisition.peak_links == 3 and len(h.acquisition.connected) <= 3
        assert h.radio.connects > 3
        for patch in h.patches:
            assert h.of(patch, "battery"), patch.device_id
            assert_matches_physiology(h, patch)


async def test_patch_off_skin_is_flagged_and_its_wound_values_held_back() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        patch.detach(at_s=5.0)
        await h.play(140.0, step_s=2.0)
        late = [r for r in h.of(patch) if r.ts_us >= h.radio.start_us + 130_000_000]
        flags = {r.value for r in late if r.metric == "status_flags"}
        assert flags == {float(PatchFlags.OFF_SKIN)}
        assert not [r for r in late if r.metric in {"wound_ph", "wound_temp", "exudate"}]
        assert h.acquisition.counters.value("vigil_ble_values_held_back_total") > 0


async def test_low_battery_shows_in_frames_and_gatt() -> None:
    async with running(1, config=replace(FAST, battery_every_s=5.0)) as h:
        patch = h.patches[0]
        await h.play(3.0)
        patch.drain_battery(10.0)
        await h.play(8.0)
        assert h.of(patch, "battery")[-1].value == 10.0
        assert h.of(patch, "status_flags")[-1].value == float(PatchFlags.LOW_BATTERY)
        assert h.acquisition.battery[patch.address].percent == 10


async def test_a_failing_sink_stops_the_source_with_its_own_error() -> None:
    async def broken(_readings: Sequence[Reading]) -> None:
        raise OSError("outbox disk full")

    radio = VirtualRadio()
    patches = populate(radio, FleetSpec(patches=2))
    config = replace(
        FAST, scanner_backend=VirtualBleakScanner.bind(radio), client_backend=VirtualBleakClient
    )
    acquisition = BleAcquisition(
        paired(patches), config, clock=radio.monotonic, now_us=radio.now_us
    )
    task = asyncio.create_task(acquisition.run(broken))
    await radio.play(3.0)
    with pytest.raises(OSError, match="disk full"):
        await asyncio.wait_for(task, 5.0)
    assert radio.connected == 0  # links were hung up on the way out
