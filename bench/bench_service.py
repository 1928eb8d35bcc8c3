"""Alert-to-ticket latency of the service worker while ingest runs flat out, against idle ingest.

Run as ``.venv/bin/python -m bench.bench_service [--series N] [--probes N]``. One private
Mosquitto; in this process: an ingest worker (SQLite) whose ``on_stored`` hook feeds a rule
engine holding ``--series`` series (default 100,000), a load generator publishing reading
batches as fast as ingest takes them, and the service worker (SQLite store). Probe alerts are
published on ``vigil/v1/alerts/<device>`` with their send time; latency = send → ticket committed
(and dispatched). The baseline phase is the same run with the load generator stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import aiomqtt

from contract import AlertEvent, AlertTransition, Batch, DeviceKind, Reading, Severity
from contract.codec import encode_batch
from contract.topics import alert_topic, batch_topic
from infra.telemetry.sqlite import SQLiteStore
from ingest.worker import IngestSettings, IngestWorker
from rules import RuleEngine, load_pack
from service.model import Device, Engineer, Site, Ticket
from service.store import SqliteStore
from service.worker import ServiceWorker, WorkerSettings
from testing_services import PrivateMosquitto

T0_US = 1_767_225_600_000_000
METRICS = (
    ("wound_temp", "degC"),
    ("skin_temp", "degC"),
    ("wound_ph", "pH"),
    ("exudate", "%"),
    ("battery", "%"),
)
BATCH = 2_000


def readings_for(tick: int, devices: int) -> list[Reading]:
    """One sample of every metric of every device at ``tick`` (one minute apart)."""
    ts = T0_US + tick * 60_000_000
    values = {
        "wound_temp": 33.0,
        "skin_temp": 32.5,
        "wound_ph": 6.8,
        "exudate": 30.0,
        "battery": 90.0,
    }
    return [
        Reading(f"p{d:06d}", m, values[m], unit, ts, tick)
        for d in range(devices)
        for m, unit in METRICS
    ]


def batches_of(readings: Sequence[Reading], seq0: int) -> list[Batch]:
    """Readings cut into uplink batches."""
    return [
        Batch(gateway_id="bench-gw", batch_seq=seq0 + i, readings=tuple(readings[j : j + BATCH]))
        for i, j in enumerate(range(0, len(readings), BATCH))
    ]


async def run(series: int, probes: int) -> None:
    """Both phases, then the figures."""
    devices = max(1, series // len(METRICS))
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-service-"))
    broker = PrivateMosquitto()
    broker.start()
    try:
        await _phases(broker.port, devices, probes, workdir)
    finally:
        broker.cleanup()


def _seeded_service(workdir: Path, probes: int) -> SqliteStore:
    """A service store with one site, the probe devices and one engineer of endless capacity."""
    service = SqliteStore(workdir / "service.db")
    service.put_site(Site(id="s", hospital="Bench", region="north"))
    for i in range(probes * 2):
        service.put_device(
            Device(
                id=f"probe-{i}",
                kind=DeviceKind.PATCH,
                model="VP-1",
                serial=f"SN{i}",
                installed_on=date(2025, 1, 1),
                site_id="s",
            )
        )
    service.put_engineer(
        Engineer(
            id="e1", name="E", region="north", skills=frozenset({DeviceKind.PATCH}), capacity=10**6
        )
    )
    return service


async def _phases(port: int, devices: int, probes: int, workdir: Path) -> None:
    service = _seeded_service(workdir, probes)
    readings = SQLiteStore(str(workdir / "readings.db"))
    readings.migrate()
    engine = RuleEngine(load_pack("dressings"))
    engine.process_readings(readings_for(0, devices))  # every series exists from the start
    latencies: dict[str, float] = {}

    def opened(ticket: Ticket, _: float) -> None:
        sent = ticket.evidence[0].data["sent_ns"]
        latencies[ticket.device_id] = (time.perf_counter_ns() - sent) / 1e9

    async def on_stored(batches: Sequence[Batch]) -> None:
        engine.process_readings([r for b in batches for r in b.readings])

    host = "127.0.0.1"
    worker = ServiceWorker(
        WorkerSettings(host=host, port=port, client_id="bench-service", tick_s=3600),
        service,
        on_ticket=opened,
    )
    ingest = IngestWorker(
        IngestSettings(host=host, port=port, client_id="bench-ingest"),
        readings,
        on_stored=on_stored,
    )
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(ingest.run())]
    await worker.subscribed.wait()
    await ingest.subscribed.wait()
    stored_before = 0
    async with aiomqtt.Client(host, port, identifier="bench-probe") as probe_client:

        async def probe(first: int) -> list[float]:
            for i in range(first, first + probes):
                event = AlertEvent(
                    device_id=f"probe-{i}",
                    rule_id="bench.probe",
                    severity=Severity.CRITICAL,
                    transition=AlertTransition.RAISED,
                    at_us=T0_US + i,
                    evidence={"sent_ns": time.perf_counter_ns()},
                )
                await probe_client.publish(alert_topic(event.device_id), event.encode(), qos=1)
                await asyncio.sleep(0.02)
            for _ in range(500):
                if all(f"probe-{i}" in latencies for i in range(first, first + probes)):
                    break
                await asyncio.sleep(0.02)
            return [
                latencies[f"probe-{i}"]
                for i in range(first, first + probes)
                if f"probe-{i}" in latencies
            ]

        idle = await probe(0)
        stored_before = int(ingest.counters.value("vigil_ingest_readings_stored_total"))
        load_started = time.perf_counter()
        stop = asyncio.Event()

        async def load() -> None:
            async with aiomqtt.Client(host, port, identifier="bench-gw") as gw:
                tick, seq = 1, 0
                while not stop.is_set():
                    for batch in batches_of(readings_for(tick, devices), seq):
                        await gw.publish(batch_topic("bench-gw"), encode_batch(batch), qos=1)
                        seq += 1
                    tick += 1
                    # Keep the broker queue short: publish only as fast as ingest stores.
                    while int(
                        ingest.counters.value("vigil_ingest_readings_stored_total")
                    ) < stored_before + (tick - 2) * devices * len(METRICS):
                        if stop.is_set():
                            return
                        await asyncio.sleep(0.005)

        loader = asyncio.create_task(load())
        await asyncio.sleep(2.0)  # let ingest reach full speed
        busy = await probe(probes)
        stop.set()
        await loader
        stored = int(ingest.counters.value("vigil_ingest_readings_stored_total")) - stored_before
        rate = stored / (time.perf_counter() - load_started)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _print(devices * len(METRICS), idle, busy, rate, probes)
    service.close()
    readings.close()


def _pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def _print(series: int, idle: list[float], busy: list[float], rate: float, probes: int) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"rule engine series: {series:,}; probes per phase: {probes}")
    print(f"ingest under load: {rate:,.0f} readings/s (rules evaluated on every batch)")
    for name, values in (("baseline (ingest idle)", idle), ("ingest at full speed", busy)):
        print(
            f"{name:24s} n={len(values):4d}  p50 {_pct(values, 50) * 1000:7.1f} ms  "
            f"p99 {_pct(values, 99) * 1000:7.1f} ms"
        )
    print(
        f"ratio p99 loaded / baseline: {_pct(busy, 99) / _pct(idle, 99):.1f}x  "
        f"(goal: p99 < 1 s → {'met' if _pct(busy, 99) < 1 else 'NOT met'})"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.series, args.probes))


if __name__ == "__main__":
    main()
