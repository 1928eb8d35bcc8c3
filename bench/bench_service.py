"""Alert-to-ticket latency of the service worker while ingest runs flat out, against idle ingest.

Run as ``.venv/bin/python -m bench.bench_service [--series N] [--probes N]``. One private
Mosquitto and one private PostgreSQL + TimescaleDB with durability on (fsync,
synchronous_commit, full_page_writes, as deployed); in this process: an ingest worker
(TimescaleDB) whose ``on_stored`` hook is the production ``RuleRuntime.on_stored`` holding
``--series`` series (default 100,000), a load generator publishing reading batches as fast as
ingest takes them, and the service worker (PostgreSQL store). Probe alerts are published on
``vigil/v1/alerts/<device>`` with their send time; latency = send → ticket committed (and
dispatched). A probe with no ticket after ``--timeout`` seconds counts as +∞ in the
percentiles (it is not dropped). The baseline phase is the same run with the load stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import time
from collections.abc import Sequence
from datetime import date

import aiomqtt

from bench.durable_postgres import BenchPostgres
from contract import AlertEvent, AlertTransition, Batch, DeviceKind, Reading, Severity
from contract.codec import encode_batch
from contract.topics import alert_topic, batch_topic
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from rules import load_pack
from rules.runtime import RuleRuntime, RuntimeSettings
from service.model import Device, Engineer, Site, Ticket
from service.store import ServiceStore, open_service_store
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
BATCH = 5_000  # readings per uplink batch, as the gateway cuts them
GOAL_P99_S = 0.25


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


async def run(series: int, probes: int, timeout_s: float, durable: bool = True) -> None:
    """Both phases, then the figures."""
    devices = max(1, series // len(METRICS))
    broker = PrivateMosquitto()
    postgres = BenchPostgres(durable=durable)
    broker.start()
    postgres.start()
    try:
        print(f"cluster: {postgres.settings()}")
        await _phases(broker.port, postgres.dsn, devices, probes, timeout_s)
    finally:
        broker.cleanup()
        postgres.cleanup()


def _seeded_service(dsn: str, probes: int) -> ServiceStore:
    """A service store with one site, the probe devices and one engineer of endless capacity."""
    service = open_service_store(dsn)
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


async def _phases(port: int, dsn: str, devices: int, probes: int, timeout_s: float) -> None:
    service = _seeded_service(dsn, probes)
    readings = TimescaleStore(dsn)
    readings.migrate()
    # The production hook: alerts are stored (the outbox); no publisher, nothing to publish.
    runtime = RuleRuntime(
        load_pack("dressings"), None, readings, None, RuntimeSettings(data_clock=True)
    )
    await runtime.on_stored(batches_of(readings_for(0, devices), 10**9))  # every series exists
    latencies: dict[str, float] = {}

    def opened(ticket: Ticket, _: float) -> None:
        sent = ticket.evidence[0].data["sent_ns"]
        latencies[ticket.device_id] = (time.perf_counter_ns() - sent) / 1e9

    host = "127.0.0.1"
    worker = ServiceWorker(
        WorkerSettings(host=host, port=port, client_id="bench-service", tick_s=3600),
        service,
        on_ticket=opened,
    )
    ingest = IngestWorker(
        IngestSettings(host=host, port=port, client_id="bench-ingest"),
        readings,
        on_stored=runtime.on_stored,
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
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if all(f"probe-{i}" in latencies for i in range(first, first + probes)):
                    break
                await asyncio.sleep(0.02)
            # No ticket by the deadline: infinitely late, never left out of the percentiles.
            return [latencies.get(f"probe-{i}", math.inf) for i in range(first, first + probes)]

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
    """The nearest-rank ``q``-th percentile (defined with +∞ among the values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _print(series: int, idle: list[float], busy: list[float], rate: float, probes: int) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"rule engine series: {series:,}; probes per phase: {probes}")
    print(f"ingest under load: {rate:,.0f} readings/s (rules evaluated on every batch)")
    for name, values in (("baseline (ingest idle)", idle), ("ingest at full speed", busy)):
        lost = sum(math.isinf(v) for v in values)
        print(
            f"{name:24s} n={len(values):4d}  p50 {_pct(values, 50) * 1000:7.1f} ms  "
            f"p99 {_pct(values, 99) * 1000:7.1f} ms  (no ticket in time: {lost})"
        )
    met = "met" if _pct(busy, 99) < GOAL_P99_S else "NOT met"
    print(
        f"ratio p99 loaded / baseline: {_pct(busy, 99) / _pct(idle, 99):.1f}x  "
        f"(goal: p99 < {GOAL_P99_S * 1000:.0f} ms → {met})"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a probe may take")
    parser.add_argument(
        "--durability", choices=("on", "off"), default="on", help="PostgreSQL fsync & co."
    )
    args = parser.parse_args()
    asyncio.run(run(args.series, args.probes, args.timeout, args.durability == "on"))


if __name__ == "__main__":
    main()
