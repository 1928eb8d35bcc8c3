"""Delivery edges: stopping with readings queued, restarts, scan duty cycle, patch reboots."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from contract.ble.frame import PatchFlags
from contract.reading import Reading
from gateway.ble import BleAcquisition, BleConfig, RejectReason
from simulator.bleak_backend import (
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec
from tests.bleak.test_bleak_acquisition import sent
from tests.bleak.test_bleak_harness import FAST, paired, running, settle, started


def world(
    patches: int, config: BleConfig = FAST, **kwargs: int
) -> tuple[VirtualRadio, list[VirtualPatch], BleConfig]:
    radio = VirtualRadio()
    world = populate(radio, FleetSpec(patches=patches), **kwargs)
    config = replace(
        config, scanner_backend=VirtualBleakScanner.bind(radio), client_backend=VirtualBleakClient
    )
    return radio, world, config


def acquire(radio: VirtualRadio, patches: list[VirtualPatch], config: BleConfig) -> BleAcquisition:
    return BleAcquisition(paired(patches), config, clock=radio.monotonic, now_us=radio.now_us)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_cancel_hands_every_decoded_reading_to_a_slow_sink() -> None:
    delivered: list[Reading] = []

    async def slow(readings: Sequence[Reading]) -> None:
        await asyncio.sleep(0.02)  # what it simulates: an outbox on a slow SD card
        delivered.extend(readings)

    radio, patches, config = world(4, replace(FAST, batch_readings=6), connectable=2)
    acquisition = acquire(radio, patches, config)
    task = asyncio.create_task(acquisition.run(slow))
    await started(acquisition)
    await radio.play(10.0, step_s=0.5, wall_step_s=0.001)
    assert acquisition.pending > 0  # the sink is behind: readings wait in memory
    await stop(task)
    assert acquisition.pending == 0
    assert acquisition.counters.value("vigil_ble_unflushed_total") == 0
    for patch in patches:
        got = {r.seq for r in delivered if r.device_id == patch.device_id}
        assert got == set(sent(patch)), patch.device_id
    assert len({r.key for r in delivered}) == len(delivered)


async def test_a_stuck_sink_does_not_hang_the_stop_and_the_loss_is_counted() -> None:
    async def stuck(_readings: Sequence[Reading]) -> None:
        await asyncio.Event().wait()

    radio, patches, config = world(2, replace(FAST, flush_timeout_s=0.2))
    acquisition = acquire(radio, patches, config)
    task = asyncio.create_task(acquisition.run(stuck))
    await started(acquisition)
    await radio.play(5.0)
    pending = acquisition.pending
    assert pending > 0
    await asyncio.wait_for(stop(task), 2.0)
    assert acquisition.counters.value("vigil_ble_unflushed_total") == pending


async def test_replay_marks_survive_a_gateway_restart(tmp_path: Path) -> None:
    marks = tmp_path / "marks.db"
    radio, patches, config = world(2, replace(FAST, replay_marks_path=marks), connectable=0)
    first: list[Reading] = []
    acquisition = acquire(radio, patches, config)
    task = asyncio.create_task(acquisition.run(functools.partial(_keep, first)))
    await started(acquisition)
    await radio.play(5.5)  # the advert of the measurement at 5 s went out at 5.001 s
    recorded = patches[0].current_advert()
    assert recorded is not None
    await stop(task)

    second: list[Reading] = []
    again = acquire(radio, patches, config)
    task = asyncio.create_task(again.run(functools.partial(_keep, second)))
    await started(again)
    # What the patch still advertises (or a recording): BlueZ reports an unchanged advert again
    # only when its RSSI moved by 8 dB or more, as it does when someone walks past.
    radio.inject(patches[0].address, recorded._replace(rssi=recorded.rssi - 10))
    await settle(again)
    assert second == []  # already stored by the first run: not again, under a new timestamp
    await radio.play(3.0)
    await stop(task)
    for patch in patches:  # each patch carries on where the first run left it, no overlap
        before = {r.seq for r in first if r.device_id == patch.device_id}
        after = {r.seq for r in second if r.device_id == patch.device_id}
        assert before and after and min(after) > max(before)
    assert again.counters.value("vigil_ble_duplicate_adverts_total") >= 1


async def _keep(into: list[Reading], readings: Sequence[Reading]) -> None:
    into.extend(readings)


async def test_without_marks_a_restart_stores_the_last_advert_twice() -> None:
    """Why the marks exist: the same measurement, re-stamped, is a second row in the database."""
    radio, patches, config = world(1, connectable=0)
    runs: list[list[Reading]] = [[], []]
    for run in runs:
        acquisition = acquire(radio, patches, config)
        task = asyncio.create_task(acquisition.run(functools.partial(_keep, run)))
        await started(acquisition)
        await radio.play(2.2 if run is runs[0] else 0.0)
        if run is runs[1]:
            advert = patches[0].current_advert()
            assert advert is not None
            radio.inject(patches[0].address, advert._replace(rssi=advert.rssi - 10))
            await settle(acquisition)
        await stop(task)
    assert runs[1] and {r.seq for r in runs[1]} <= {r.seq for r in runs[0]}


async def test_duty_cycled_scanning_hears_adverts_only_in_its_window() -> None:
    config = replace(FAST, scan_window_s=5.0, scan_every_s=20.0)
    async with running(2, connectable=1, config=config) as h:
        linked, passive = h.patches
        windows: list[bool] = []
        for _ in range(80):
            await h.play(0.5, step_s=0.5)
            windows.append(h.acquisition.scanning)
        assert any(windows) and not all(windows)
        assert sum(windows) / len(windows) < 0.5
        # The linked patch notifies whether or not we scan; the passive one only in windows.
        assert linked.address in h.acquisition.connected
        heard = {r.seq for r in h.of(passive)}
        assert heard and len(heard) < len(passive.emissions) * 0.5
        assert len({r.seq for r in h.of(linked)}) >= len(linked.emissions) - 5
        for r in h.of(passive):
            assert (r.ts_us - h.radio.start_us) / 1e6 % 20.0 < 5.0 + 0.5  # heard in a window


async def test_patch_reboot_resumes_above_its_flash_mark_and_is_flagged() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(5.0)
        patch.reboot()
        await h.play(3.0)
        status = h.of(patch, "status_flags")
        rebooted = [r for r in status if int(r.value) & PatchFlags.REBOOTED]
        assert len(rebooted) == 1 and rebooted[0].seq == 256
        assert h.acquisition.counters.rejected(RejectReason.REPLAYED) == 0


async def test_patch_that_forgets_its_counter_is_refused_until_re_paired() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(6.0)
        before = len(h.delivered)
        patch.reboot(persisted=False)  # a firmware bug: counters restart at 1 under the same key
        await h.play(4.0)
        assert len(h.delivered) == before  # indistinguishable from a replay, so refused
        assert h.acquisition.counters.rejected(RejectReason.REPLAYED) >= 3
