"""How many patches one gateway process serves over BLE: CPU, memory and readings per second.

Run as ``.venv/bin/python -m bench.bench_ble [--advertising 500] [--connected 20] [--seconds 20]``.
Virtual patches (simulator.bleak_backend) run in real time in this process, on the BlueZ-faithful
virtual BlueZ: adverts and scan responses are separate 31-byte PDUs, and a scanner is called back
only when a device's data changes (or its RSSI moves by 8 dB), as BlueZ does with bleak's
``DuplicateData=False``. The baseline phase runs the same air with a scanner that ignores every
advert, so the difference is the gateway's own cost: scanning callbacks, AES-CCM, replay checks,
the connect queue, readings and the sink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from contract.reading import Reading
from gateway.ble import BleAcquisition, BleConfig, PairedPatch, RejectReason
from simulator.bleak_backend import (
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec


@dataclass(frozen=True, slots=True)
class Phase:
    """What one phase cost and delivered."""

    name: str
    seconds: float
    cpu_s: float
    rss_mb: float
    readings: int
    linked: int
    transmitted: int = 0  # advertising events on the air


def cpu_seconds() -> float:
    """User plus system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Resident memory now (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MEASURE_EVERY_S = 1.0  # set from --measure-every: seconds between two measurements of a patch


def world(advertising: int, connected: int) -> tuple[VirtualRadio, list[VirtualPatch]]:
    """``connected`` connectable patches and ``advertising`` passive ones, advertising at 1 Hz
    and measuring every ``MEASURE_EVERY_S`` (BlueZ reports only the adverts that changed)."""
    radio = VirtualRadio()
    patches = populate(
        radio,
        FleetSpec(patches=advertising + connected),
        connectable=connected,
        measure_every_s=MEASURE_EVERY_S,
        advert_every_s=1.0,
    )
    return radio, patches


async def baseline(advertising: int, connected: int, seconds: float) -> Phase:
    """The air alone: patches measure and advertise, a scanner hears and ignores it."""
    radio, _ = world(advertising, connected)
    heard = 0

    def ignore(_device: BLEDevice, _adv: AdvertisementData) -> None:
        nonlocal heard
        heard += 1

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    async with BleakScanner(ignore, backend=VirtualBleakScanner.bind(radio)):
        driver = asyncio.create_task(radio.run())
        await asyncio.sleep(seconds)
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
    sent = sum(p.adverts_sent for p in radio.patches.values())
    return Phase(
        "air only (baseline)",
        time.perf_counter() - t0,
        cpu_seconds() - cpu0,
        rss_mb(),
        heard,
        0,
        sent,
    )


async def gateway(advertising: int, connected: int, seconds: float) -> Phase:
    """The same air with the gateway's BleAcquisition scanning, linking and decoding."""
    radio, patches = world(advertising, connected)
    config = BleConfig(
        max_connections=connected,
        scanner_backend=VirtualBleakScanner.bind(radio),
        client_backend=VirtualBleakClient,
    )
    acquisition = BleAcquisition(
        [PairedPatch(p.address, p.key, p.device_id) for p in patches],
        config,
        clock=radio.monotonic,
        time_source=radio.gateway_clock,  # NTP-synchronised: readings are not held
    )
    delivered = 0

    async def sink(readings: Sequence[Reading]) -> None:
        nonlocal delivered
        delivered += len(readings)

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    tasks = [asyncio.create_task(acquisition.run(sink)), asyncio.create_task(radio.run())]
    await asyncio.sleep(seconds)
    linked = radio.connected
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    sent = sum(p.adverts_sent for p in radio.patches.values())
    phase = Phase(
        "gateway",
        time.perf_counter() - t0,
        cpu_seconds() - cpu0,
        rss_mb(),
        delivered,
        linked,
        sent,
    )
    heard = acquisition.counters.value("vigil_ble_adverts_total")
    print(f"  gateway heard {heard:,.0f} advert callbacks for {sent:,} transmissions")
    refused = {r.value: acquisition.counters.rejected(r) for r in RejectReason}
    if any(refused.values()):
        print(f"  unexpected refusals: {refused}")
    return phase


def report(phases: list[Phase], advertising: int, connected: int) -> None:
    """Print the figures and the gateway's share against the baseline."""
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"load: {advertising} advertising patches at 1 advert/s, "
        f"{connected} connected patches; a measurement every {MEASURE_EVERY_S:g} s"
    )
    for p in phases:
        print(
            f"  {p.name:22s} {p.seconds:5.1f} s wall  {p.cpu_s:6.2f} s CPU "
            f"({100 * p.cpu_s / p.seconds:5.1f} % of a core)  RSS {p.rss_mb:6.1f} MB  "
            f"{p.readings / p.seconds:8.1f} /s {'adverts heard' if not p.linked else 'readings'}"
            + (f"  links {p.linked}" if p.linked else "")
            + f"  ({p.transmitted / p.seconds:,.0f} adverts/s on the air)"
        )
    base, full = phases
    own = full.cpu_s - base.cpu_s
    print(
        f"  gateway's own CPU: {own:.2f} s = {100 * own / full.seconds:.1f} % of a core; "
        f"ratio to baseline CPU {full.cpu_s / base.cpu_s:.2f}x"
    )
    print(f"  peak RSS of the process: {peak_rss_mb():.1f} MB (goal < 100 MB)")


async def main(advertising: int, connected: int, seconds: float) -> None:
    """Baseline, then the gateway, on fresh but identical worlds."""
    base = await baseline(advertising, connected, seconds)
    gc.collect()
    full = await gateway(advertising, connected, seconds)
    report([base, full], advertising, connected)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--advertising", type=int, default=500)
    parser.add_argument("--connected", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--measure-every", type=float, default=1.0)
    args = parser.parse_args()
    MEASURE_EVERY_S = args.measure_every
    asyncio.run(main(args.advertising, args.connected, args.seconds))
