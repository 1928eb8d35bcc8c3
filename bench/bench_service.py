"""Alert-to-ticket latency of the service worker while ingest runs flat out, against idle ingest.

Run as ``.venv/bin/python -m bench.bench_service [--series N] [--probes N]``. One private
Mosquitto and one private PostgreSQL + TimescaleDB with durability on (fsync,
synchronous_commit, full_page_writes, as deployed), and the processes as deploy/systemd runs
them:

- ingest: the real ``vigil ingest run --replica 1`` command, its own process, with the rules in
  process (the production ``RuleRuntime.on_stored``, the ``dressings`` pack) holding
  ``--series`` series (default 100,000), alerts published to the broker;
- the service worker: its own process, built as ``vigil service run`` builds it (the same
  settings, store and ``ServiceWorker``), plus an ``on_ticket`` hook that reports each opened
  ticket's latency to this process;
- this process: a load generator publishing reading batches as fast as ingest stores them (it
  reads ingest's stored-readings counter from its metrics endpoint), and the probe.

Probe alerts are published on ``vigil/v1/alerts/<device>`` with their send time (the monotonic
clock, shared by every process of the machine); latency = send → ticket committed. A probe with
no ticket after ``--timeout`` seconds counts as +∞ in the percentiles (it is not dropped). The
baseline phase is the same run with the load stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import multiprocessing
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from multiprocessing.queues import Queue
from pathlib import Path

import aiomqtt

from bench.durable_postgres import BenchPostgres
from contract import AlertEvent, AlertTransition, Batch, DeviceKind, Reading, Severity
from contract.codec import encode_batch
from contract.topics import alert_topic, batch_topic
from infra.time_us import now_us
from service.model import Device, Engineer, Site, Ticket
from service.store import ServiceStore, open_service_store
from service.worker_settings import WorkerSettings
from testing_services import PrivateMosquitto
from testing_services.servers import free_port

METRICS = (
    ("wound_temp", "degC"),
    ("skin_temp", "degC"),
    ("wound_ph", "pH"),
    ("exudate", "%"),
    ("battery", "%"),
)
VALUES = {"wound_temp": 33.0, "skin_temp": 32.5, "wound_ph": 6.8, "exudate": 30.0, "battery": 90.0}
BATCH = 5_000  # readings per uplink batch, as the gateway cuts them
GOAL_P99_S = 0.25
STORED = re.compile(rb"^vigil_ingest_readings_stored_total (\S+)$", re.MULTILINE)
CONNECTED = re.compile(rb"^vigil_consume_connected\{[^}]*\} 1\.0$", re.MULTILINE)


def readings_for(tick: int, devices: int) -> list[Reading]:
    """One sample of every metric of every device, stamped now (the runtime's wall clock)."""
    ts = now_us()
    return [
        Reading(f"p{d:06d}", m, VALUES[m], unit, ts, tick)
        for d in range(devices)
        for m, unit in METRICS
    ]


def batches_of(readings: Sequence[Reading], seq0: int) -> list[Batch]:
    """Readings cut into uplink batches."""
    return [
        Batch(gateway_id="bench-gw", batch_seq=seq0 + i, readings=tuple(readings[j : j + BATCH]))
        for i, j in enumerate(range(0, len(readings), BATCH))
    ]


def deployed_env(port: int, dsn: str) -> dict[str, str]:
    """The environment deploy/ gives the workers, pointed at the private broker and cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_CONFIG=os.devnull,
        VIGIL_UPLINK_BROKER__HOST="127.0.0.1",
        VIGIL_UPLINK_BROKER__PORT=str(port),
        VIGIL_INGEST__STORAGE_URL=dsn,
        VIGIL_SERVICE__STORE_URL=dsn,
        VIGIL_RULES__PACKS='["dressings"]',
    )
    return env


Report = tuple[str, float, float, int]  # device, send → commit, receipt → commit, alerts taken


def service_worker_process(env: Mapping[str, str], reports: Queue[Report], group: int) -> None:
    """The service worker as ``vigil service run`` builds it, reporting each ticket's latency."""
    os.environ.clear()
    os.environ.update(env)
    from service.worker import ServiceWorker
    from vigil.settings import VigilSettings

    vigil = VigilSettings()
    store = open_service_store(vigil.service.store_url, sla=vigil.sla_config())
    # ``--group 1`` measures the worker as it was: one transaction (one WAL flush) per alert.
    settings = dataclasses.replace(vigil.service_worker_settings(store), alert_group_max=group)

    def opened(ticket: Ticket, handled_s: float) -> None:
        sent = ticket.evidence[0].data.get("sent_ns")
        if isinstance(sent, int):
            latency = (time.perf_counter_ns() - sent) / 1e9
            reports.put((ticket.device_id, latency, handled_s, worker.alerts_received))

    worker = ServiceWorker(settings, store, on_ticket=opened)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        await worker.subscribed.wait()
        reports.put(("subscribed", 0.0, 0.0, 0))
        await task

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        asyncio.run(main())
    finally:
        store.close()


async def run(
    series: int, probes: int, timeout_s: float, durable: bool = True, group: int | None = None
) -> None:
    """Both phases, then the figures."""
    devices = max(1, series // len(METRICS))
    broker = PrivateMosquitto()
    postgres = BenchPostgres(durable=durable)
    broker.start()
    postgres.start()
    try:
        print(f"cluster: {postgres.settings()}")
        _seeded_service(postgres.dsn, probes).close()
        env = deployed_env(broker.port, postgres.dsn)
        group = WorkerSettings().alert_group_max if group is None else group
        print(f"service worker: at most {group} alert(s) per transaction")
        await _with_workers(env, broker.port, devices, probes, timeout_s, group)
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


class Ingest:
    """``vigil ingest run --replica 1`` in its own process, read through its metrics endpoint."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.metrics_port = free_port()
        vigil = Path(sys.executable).with_name("vigil")
        command = [str(vigil), "ingest", "run", "--replica", "1"]
        command += ["--metrics-port", str(self.metrics_port)]
        self.process = subprocess.Popen(command, env=dict(env), stdout=subprocess.DEVNULL)

    def scrape(self) -> bytes:
        """The metrics page; empty while the endpoint is not up."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body
        except OSError:
            return b""

    async def stored(self) -> int:
        """Readings ingest committed so far."""
        found = STORED.search(await asyncio.to_thread(self.scrape))
        return int(float(found.group(1))) if found else 0

    async def wait_subscribed(self, deadline_s: float = 60.0) -> None:
        """Wait until ingest's consume loop is connected and subscribed."""
        deadline = time.monotonic() + deadline_s
        while not CONNECTED.search(await asyncio.to_thread(self.scrape)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vigil ingest run did not come up")
            await asyncio.sleep(0.1)

    async def wait_stored(self, at_least: int, deadline_s: float = 120.0) -> None:
        """Wait until ingest stored ``at_least`` readings."""
        deadline = time.monotonic() + deadline_s
        while await self.stored() < at_least:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingest stored fewer than {at_least} readings in time")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as systemd stops it."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Tickets:
    """Latencies the service worker process reports, by device."""

    def __init__(self, reports: Queue[Report]) -> None:
        self.reports = reports
        self.latencies: dict[str, float] = {}
        self.handled: dict[str, float] = {}  # receipt → commit, inside the worker
        self.alerts_taken = 0  # by the worker, probes or not

    def poll(self) -> None:
        """Take every report queued so far."""
        while True:
            try:
                device, latency, handled, taken = self.reports.get_nowait()
            except queue.Empty:
                return
            self.latencies[device] = latency
            self.handled[device] = handled
            self.alerts_taken = max(self.alerts_taken, taken)

    async def wait_subscribed(self, deadline_s: float = 60.0) -> None:
        """Wait for the worker's word that it is subscribed to alerts."""
        deadline = time.monotonic() + deadline_s
        while "subscribed" not in self.latencies:
            if time.monotonic() > deadline:
                raise RuntimeError("the service worker did not come up")
            await asyncio.sleep(0.05)
            self.poll()


async def _with_workers(
    env: Mapping[str, str], port: int, devices: int, probes: int, timeout_s: float, group: int
) -> None:
    spawn = multiprocessing.get_context("spawn")
    reports: Queue[Report] = spawn.Queue()
    service = spawn.Process(target=service_worker_process, args=(dict(env), reports, group))
    service.start()
    ingest = Ingest(env)
    try:
        tickets = Tickets(reports)
        await tickets.wait_subscribed()
        await ingest.wait_subscribed()
        await _phases(port, ingest, tickets, devices, probes, timeout_s)
    finally:
        ingest.stop()
        service.terminate()
        service.join(30)


async def _phases(
    port: int, ingest: Ingest, tickets: Tickets, devices: int, probes: int, timeout_s: float
) -> None:
    host = "127.0.0.1"
    per_tick = devices * len(METRICS)
    async with aiomqtt.Client(host, port, identifier="bench-gw") as gw:
        seq = 0

        async def publish_tick(tick: int) -> None:
            nonlocal seq
            for batch in batches_of(readings_for(tick, devices), seq):
                await gw.publish(batch_topic("bench-gw"), encode_batch(batch), qos=1)
                seq += 1

        await publish_tick(0)  # every series exists in the rule runtime before the baseline
        await ingest.wait_stored(per_tick)
        async with aiomqtt.Client(host, port, identifier="bench-probe") as probe_client:

            async def probe(first: int) -> Phase:
                return await _probe(probe_client, tickets, first, probes, timeout_s)

            idle = await probe(0)
            stored_before = await ingest.stored()
            load_started = time.perf_counter()
            stop = asyncio.Event()

            async def load() -> None:
                tick = 1
                while not stop.is_set():
                    await publish_tick(tick)
                    tick += 1
                    # Keep the broker queue short: publish only as fast as ingest stores.
                    while await ingest.stored() < stored_before + (tick - 2) * per_tick:
                        if stop.is_set():
                            return
                        await asyncio.sleep(0.02)

            loader = asyncio.create_task(load())
            await asyncio.sleep(2.0)  # let ingest reach full speed
            busy = await probe(probes)
            stop.set()
            await loader
            stored = await ingest.stored() - stored_before
            rate = stored / (time.perf_counter() - load_started)
    _print(per_tick, idle, busy, rate, probes)
    # Settled when the last ticket was reported: the last group's own alerts are not yet counted.
    print(
        f"alerts the service worker had settled by its last ticket: {tickets.alerts_taken} "
        f"(probes: {2 * probes}; more would mean alerts of the load's own rules)"
    )


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase's probe latencies: send → commit, and its part inside the worker."""

    latencies: list[float]
    handled: list[float]  # receipt by the worker's consumer → ticket committed
    load: str  # load average at the end of the phase


async def _probe(
    client: aiomqtt.Client, tickets: Tickets, first: int, probes: int, timeout_s: float
) -> Phase:
    """Publish ``probes`` alerts 20 ms apart; their latencies, +∞ for those with no ticket."""
    for i in range(first, first + probes):
        event = AlertEvent(
            device_id=f"probe-{i}",
            rule_id="bench.probe",
            severity=Severity.CRITICAL,
            transition=AlertTransition.RAISED,
            at_us=now_us(),
            evidence={"sent_ns": time.perf_counter_ns()},
        )
        await client.publish(alert_topic(event.device_id), event.encode(), qos=1)
        await asyncio.sleep(0.02)
    names = [f"probe-{i}" for i in range(first, first + probes)]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tickets.poll()
        if all(name in tickets.latencies for name in names):
            break
        await asyncio.sleep(0.02)
    # No ticket by the deadline: infinitely late, never left out of the percentiles.
    return Phase(
        [tickets.latencies.get(name, math.inf) for name in names],
        [tickets.handled.get(name, math.inf) for name in names],
        _loadavg(),
    )


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def _pct(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (defined with +∞ among the values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _print(series: int, idle: Phase, busy: Phase, rate: float, probes: int) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"rule engine series: {series:,}; probes per phase: {probes}")
    print("processes: vigil ingest run (rules in process), service worker, load + probe")
    print(f"ingest under load: {rate:,.0f} readings/s (rules evaluated on every batch)")
    for name, phase in (("baseline (ingest idle)", idle), ("ingest at full speed", busy)):
        values = phase.latencies
        lost = sum(math.isinf(v) for v in values)
        print(
            f"{name:24s} n={len(values):4d}  p50 {_pct(values, 50) * 1000:7.1f} ms  "
            f"p99 {_pct(values, 99) * 1000:7.1f} ms  (no ticket in time: {lost}; "
            f"load average {phase.load})"
        )
        print(
            f"{'  of it in the worker':24s}         p50 {_pct(phase.handled, 50) * 1000:7.1f} ms  "
            f"p99 {_pct(phase.handled, 99) * 1000:7.1f} ms  (consumer receipt → commit)"
        )
    met = "met" if _pct(busy.latencies, 99) < GOAL_P99_S else "NOT met"
    ratio = _pct(busy.latencies, 99) / _pct(idle.latencies, 99)
    print(
        f"ratio p99 loaded / baseline: {ratio:.1f}x  "
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
    parser.add_argument(
        "--group",
        type=int,
        default=None,
        help="alerts per service transaction [default: the worker's alert_group_max]",
    )
    args = parser.parse_args()
    durable = args.durability == "on"
    asyncio.run(run(args.series, args.probes, args.timeout, durable, args.group))


if __name__ == "__main__":
    main()
