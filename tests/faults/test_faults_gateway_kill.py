"""The gateway process is SIGKILLed mid-batch and restarted on its outbox: exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from pathlib import Path

import pytest

from simulator.fleet import FleetSpec
from tests.faults.harness import (
    appended_total,
    expected_patch_readings,
    open_batches,
    reconcile,
    running_ingest,
    start_gateway,
    wait_until_stored,
)
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

PATCHES = 150
TICKS = 200
# Must match what `vigil gateway run` builds from VIGIL_SIMULATOR__SEED and its defaults.
SPEC = FleetSpec(seed=11, patches=PATCHES, equipment=0)

pytestmark = pytest.mark.services


async def test_gateway_sigkill_mid_drain_then_restart_only_drains(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    # The first process produces every tick at full speed, so the restarted one has nothing
    # new to produce: the expected set is exactly the whole simulation, and a repeat could
    # only come from a resent batch, which batch_seq deduplication must absorb.
    expected = expected_patch_readings(SPEC, TICKS)
    outbox = tmp_path / "outbox.db"
    async with running_ingest(mosquitto.port, timescale_dsn):
        # Small batches, two in flight: a drain slow enough to be caught in the middle.
        first = start_gateway(
            tmp_path,
            outbox,
            mosquitto.port,
            "--simulate-patches",
            str(PATCHES),
            "--ticks",
            str(TICKS),
            "--tick-wall-s",
            "0",
            VIGIL_GATEWAY__BATCH_MAX_READINGS="200",
            VIGIL_GATEWAY__MAX_INFLIGHT="2",
        )
        try:
            await wait_until_async(
                lambda: appended_total(outbox) == expected.count, 60, "everything produced"
            )
            await wait_until_async(lambda: reconcile(timescale_dsn).count > 0, 60, "a first row")
            # Aim the kill at a moment with a batch cut but not yet confirmed (best effort).
            with contextlib.suppress(TimeoutError):
                await wait_until_async(lambda: open_batches(outbox) > 0, 2.0, poll_s=0.005)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        stored_at_kill = reconcile(timescale_dsn).count
        cut_at_kill = open_batches(outbox)
        assert stored_at_kill < expected.count, "drained before the kill: nothing tested"
        # Usually 1-2 batches were open; a confirmation may land between the check and the kill.

        second = start_gateway(tmp_path, outbox, mosquitto.port, "--exit-when-drained")
        assert await asyncio.to_thread(second.wait, 120) == 0
        tally = await wait_until_stored(timescale_dsn, expected.count)

    print(f"stored at kill {stored_at_kill}/{expected.count}, open batches {cut_at_kill}")
    assert tally.count == expected.count, "readings lost"
    assert math.isclose(tally.value_sum, expected.value_sum, rel_tol=1e-12)
    assert tally.duplicate_keys == 0
    assert tally.batch_readings == expected.count, "a reading travelled in two claimed batches"


async def test_gateway_sigkill_while_producing_then_resimulate(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    # Killed mid-production, the restarted process simulates again from tick 0: its patches
    # re-emit readings with the same keys (device, metric, seq, ts) in new batch_seqs, and
    # storage's reading-key idempotency absorbs them. The expected set is the whole simulation.
    expected = expected_patch_readings(SPEC, TICKS)
    outbox = tmp_path / "outbox.db"
    args = ("--simulate-patches", str(PATCHES), "--ticks", str(TICKS), "--tick-wall-s", "0.01")
    async with running_ingest(mosquitto.port, timescale_dsn):
        first = start_gateway(tmp_path, outbox, mosquitto.port, *args)
        try:
            await wait_until_async(
                lambda: appended_total(outbox) > expected.count // 3, 60, "a third produced"
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        appended_at_kill = appended_total(outbox)
        assert appended_at_kill < expected.count
        second = start_gateway(tmp_path, outbox, mosquitto.port, *args, "--exit-when-drained")
        assert await asyncio.to_thread(second.wait, 120) == 0
        tally = await wait_until_stored(timescale_dsn, expected.count)

    print(
        f"appended at kill {appended_at_kill}/{expected.count}; "
        f"repeats absorbed by key {tally.batch_readings - tally.count}"
    )
    assert tally.count == expected.count, "readings lost"
    assert math.isclose(tally.value_sum, expected.value_sum, rel_tol=1e-12)
    assert tally.duplicate_keys == 0


async def test_gateway_exits_cleanly_on_sigterm(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    proc = start_gateway(
        tmp_path,
        tmp_path / "outbox.db",
        mosquitto.port,
        "--simulate-patches",
        "5",
        "--ticks",
        "100000",
        "--tick-wall-s",
        "0.01",
    )
    await wait_until_async(lambda: appended_total(tmp_path / "outbox.db") > 0, 60, "production")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 15) == 0
