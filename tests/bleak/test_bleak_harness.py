"""A harness for the BLE tests: a virtual radio, the gateway's real acquisition, and a sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from contract.reading import Reading
from gateway.ble import BleAcquisition, BleConfig, PairedPatch
from simulator.bleak_backend import (
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec
from tests.waiting import wait_until_async

# Wall-clock knobs short enough for tests; everything else runs on the radio's simulated clock.
FAST = BleConfig(
    wall_poll_s=0.005,
    wall_sweep_s=0.005,
    reconnect_after_s=2.0,
    gone_after_s=30.0,
    connect_attempts=1,
    adapter_poll_s=0.01,
    adapter_off_s=0.001,
    scanner_retry_s=0.005,
    scanner_retry_max_s=0.02,
    scanner_start_timeout_s=2.0,
    scanner_stop_timeout_s=2.0,
)


def paired(patches: Iterable[VirtualPatch]) -> list[PairedPatch]:
    """The allowlist a gateway provisioned with these patches would hold."""
    return [PairedPatch(p.address, p.key, p.device_id) for p in patches]


@dataclass
class Harness:
    """The radio, its patches, the acquisition under test and what reached its sink."""

    radio: VirtualRadio
    patches: list[VirtualPatch]
    acquisition: BleAcquisition
    delivered: list[Reading] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def sink(self, readings: Sequence[Reading]) -> None:
        """The ReadingSink: keep everything."""
        self.delivered.extend(readings)

    async def play(self, seconds: float, step_s: float = 0.5, wall_step_s: float = 0.002) -> None:
        """Advance simulated time, letting the gateway run, then let deliveries settle."""
        await self.radio.play(seconds, step_s=step_s, wall_step_s=wall_step_s)
        await settle(self.acquisition)

    def of(self, patch: VirtualPatch, metric: str | None = None) -> list[Reading]:
        """Delivered readings of one patch (and metric)."""
        return [
            r
            for r in self.delivered
            if r.device_id == patch.device_id and (metric is None or r.metric == metric)
        ]


async def started(acquisition: BleAcquisition) -> None:
    """Wait until the acquisition's scanner listens: adverts from now on are heard."""
    await wait_until_async(lambda: acquisition.scanning, 10, "the BLE scanner to start")


async def settle(acquisition: BleAcquisition) -> None:
    """Wait until the sink has taken every reading the acquisition decoded."""
    await wait_until_async(lambda: not acquisition.pending, 10, "the sink to take every reading")


@contextlib.asynccontextmanager
async def running(
    patches: int = 3,
    *,
    connectable: int | None = None,
    config: BleConfig = FAST,
    allow: list[PairedPatch] | None = None,
    seed: int = 7,
    prepare: Callable[[VirtualRadio, list[VirtualPatch]], None] | None = None,
    wait_scanning: bool = True,
    measure_every_s: float = 1.0,
) -> AsyncIterator[Harness]:
    """A world of ``patches`` virtual patches and a running acquisition paired with them;
    ``prepare`` scripts the radio (faults, stale links) before the acquisition starts."""
    radio = VirtualRadio()
    world = populate(
        radio,
        FleetSpec(seed=seed, patches=patches),
        connectable=connectable,
        measure_every_s=measure_every_s,
        advert_every_s=measure_every_s,
    )
    if prepare is not None:
        prepare(radio, world)
    config = replace(
        config,
        scanner_backend=VirtualBleakScanner.bind(radio),
        client_backend=VirtualBleakClient,
    )
    harness = Harness(radio, world, BleAcquisition([], config))
    acquisition = BleAcquisition(
        paired(world) if allow is None else allow,
        config,
        clock=radio.monotonic,
        time_source=radio.gateway_clock,
        on_gone=harness.gone.append,
    )
    harness.acquisition = acquisition
    task = asyncio.create_task(acquisition.run(harness.sink))
    harness.task = task
    if wait_scanning:
        await started(acquisition)
    try:
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_harness_starts_and_stops_cleanly() -> None:
    async with running(2) as h:
        await h.play(3.0)
        assert h.delivered
    assert h.radio.connected == 0  # cancelling the acquisition hung up every link
