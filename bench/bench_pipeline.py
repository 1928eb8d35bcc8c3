"""End-to-end sustained throughput, against PostgreSQL's own ceilings measured in the same run.

    .venv/bin/python -m bench.bench_pipeline [--readings N] [--durability on|off|both]
                                             [--ingest-replicas N]
                                             [--profile docs/profile-pipeline.svg]

Path: simulated patches → gateway (outbox, batches, QoS 1) → private Mosquitto → ingest as
docker-compose deploys it (two `vigil ingest run --no-rules` replicas in a shared group and a
`vigil rules run` beside them; ``--ingest-replicas 1``: one ingest with its rules in process)
→ private TimescaleDB. The simulator's readings are generated before the clock starts: on real
hardware the patches compute them, not the gateway. The clock stops when ingest has confirmed
every batch and the hypertable holds every reading; each round is then audited (0 lost, 0
duplicated, value sum) outside the clock. Every timed run, baselines included, starts on
emptied tables right after a CHECKPOINT.

Headline with PostgreSQL's durability on (fsync, synchronous_commit, full_page_writes, as
deployed), secondary with them off. Baselines on the same cluster and table, with the same
readings in the same transactions as ingest (16 gateway batches of 5,000 per transaction):
(a) the server's own ``COPY … FROM '<file>' (FORMAT binary)``, (b) psycopg's write_row COPY
loop, (c) executemany. Also CPU-seconds per million readings of each process during the
end-to-end run, and the ingest process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import psycopg

from bench.bench_storage import chunks, decoded, naive_insert, raw_copy, reset, server_copy
from bench.durable_postgres import BenchPostgres
from contract import Batch, Reading, encode_batch
from contract.topics import batch_topic
from gateway.app import Gateway, GatewaySettings
from gateway.source import ReadingSink
from gateway.uplink import UplinkSettings
from infra.telemetry.copy_columns import copy_chunks
from infra.telemetry.timescale import TimescaleStore
from infra.time_us import now_us
from simulator.fleet import Fleet, FleetSpec
from testing_services import PrivateMosquitto

PATCHES = 500
GATEWAY_BATCH = 5_000  # the uplink's batch_max_readings below
PER_WRITE = 16  # ingest's max_messages_per_write below
ROUNDS = 2  # of each baseline
TICKS_HZ = 100  # /proc/<pid>/stat counts CPU time in clock ticks


class PregeneratedPatches:
    """A reading source that replays simulator ticks as fast as the gateway takes them."""

    name = "pregenerated"

    def __init__(self, ticks: Sequence[list[Reading]]) -> None:
        self.ticks = ticks

    async def run(self, sink: ReadingSink) -> None:
        """Hand every tick to the gateway."""
        for readings in self.ticks:
            await sink(readings)


@dataclass(frozen=True)
class Workload:
    """The fleet's readings, produced before the clock starts, and what they add up to."""

    ticks: list[list[Reading]]
    produced: int
    value_sum: float

    @classmethod
    def of(cls, readings: int, rounds: int = 1) -> list[Workload]:
        """``rounds`` workloads of about ``readings`` readings of ``PATCHES`` simulated patches
        each, one after the other in time (a second round is new readings to the rules)."""
        fleet = Fleet(FleetSpec(seed=3, patches=PATCHES, equipment=0))
        per_round = max(1, readings // (PATCHES * 6))
        works = []
        for r in range(rounds):
            ticks = [fleet.patch_readings(k) for k in range(r * per_round, (r + 1) * per_round)]
            values = [x.value for tick in ticks for x in tick]
            works.append(cls(ticks, len(values), math.fsum(values)))
        return works

    def batches(self) -> list[Batch]:
        """The readings cut into gateway-sized batches."""
        flat = [r for tick in self.ticks for r in tick]
        return [
            Batch("ceiling", n, tuple(flat[i : i + GATEWAY_BATCH]))
            for n, i in enumerate(range(0, len(flat), GATEWAY_BATCH))
        ]


def stored_count(dsn: str) -> int:
    """Rows in the hypertable (a cheap check, for the end-to-end clock)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def stored(dsn: str) -> tuple[int, float, int]:
    """Count, value sum and duplicate keys in the hypertable."""
    with psycopg.connect(dsn) as conn:
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(value), 0) FROM readings"
        ).fetchone() or (0, 0.0)
        dups = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, metric, seq, ts"
            " HAVING count(*) > 1) d"
        ).fetchone()
    return int(count), float(total), int(dups[0] if dups else 0)


def _env(dsn: str, broker: PrivateMosquitto) -> dict[str, str]:
    """The deployed environment of ingest and rules, pointed at the bench's servers."""
    return {
        **os.environ,
        "VIGIL_UPLINK_BROKER__PORT": str(broker.port),
        "VIGIL_INGEST__STORAGE_URL": dsn,
        "VIGIL_INGEST__MAX_MESSAGES_PER_WRITE": str(PER_WRITE),
        # Each run starts its rules afresh: the default path (var/ in the working directory)
        # would hand one run's engine state to the next.
        "VIGIL_RULES__SNAPSHOT_PATH": str(broker.dir / "rules-engine.snap"),
        "VIGIL_CONFIG": os.devnull,  # no stray vigil.toml
    }


def start_ingest(
    dsn: str, broker: PrivateMosquitto, replica: int | None = None
) -> subprocess.Popen[bytes]:
    """`vigil ingest run` as its own process: one with its rules in process (``replica``
    None), or replica N of a shared group without rules, as docker-compose runs two."""
    vigil = str(Path(sys.executable).with_name("vigil"))
    env = _env(dsn, broker)
    if replica is None:
        env["VIGIL_INGEST__CLIENT_ID"] = "bench-ingest"
        return subprocess.Popen([vigil, "ingest", "run"], env=env)
    env["VIGIL_INGEST__SHARED_GROUP"] = "ingest"
    command = [vigil, "ingest", "run", "--no-rules", "--replica", str(replica)]
    return subprocess.Popen(command, env=env)


def start_rules(dsn: str, broker: PrivateMosquitto, log: Path) -> subprocess.Popen[bytes]:
    """`vigil rules run`, fed by the broker beside the ingest replicas (docker-compose), its
    output in ``log``."""
    vigil = str(Path(sys.executable).with_name("vigil"))
    with log.open("wb") as out:  # the child keeps its own descriptor
        command = [vigil, "rules", "run", "--replica", "1"]
        return subprocess.Popen(command, env=_env(dsn, broker), stdout=out, stderr=out)


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of ``pid``, with its reaped children's if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICKS_HZ


def postgres_cpu(server: BenchPostgres) -> float:
    """CPU seconds of the cluster: postmaster, its live processes and the ones that ended."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = proc_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == postmaster:
                    total += proc_cpu(int(entry.name))
    return total


def peak_rss_mb(pid: int) -> float:
    """The peak resident set (VmHWM) of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_cpu() -> float:
    """CPU seconds of this process (the gateway and its outbox)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def end_to_end(
    dsn: str, broker: PrivateMosquitto, work: Workload, workdir: Path, gateway_id: str
) -> float:
    """Readings/s through the whole path, measured until the last reading is in the database."""
    settings = GatewaySettings(
        gateway_id=gateway_id,
        outbox_path=workdir / "outbox.db",
        uplink=UplinkSettings(port=broker.port, batch_max_readings=GATEWAY_BATCH, max_inflight=8),
    )
    start = time.perf_counter()
    async with Gateway(settings, [PregeneratedPatches(work.ticks)]) as gateway:
        await gateway.sources_done()
        await gateway.drained()
        # Drained means ingest confirmed every batch; the count proves the last one is in. The
        # duplicate audit (a GROUP BY over every row, ~0.6 s) runs after the clock stops.
        for _ in range(100_000):
            if stored_count(dsn) >= work.produced:
                break
            await asyncio.sleep(0.02)
    return work.produced / (time.perf_counter() - start)


def audit(dsn: str, work: Workload) -> None:
    """0 lost, 0 duplicated, every value as produced."""
    count, total, dups = stored(dsn)
    assert count == work.produced and dups == 0, (count, work.produced, dups)
    assert abs(total - work.value_sum) < 1e-6 * max(1.0, abs(work.value_sum)), total


async def wait_subscribed(dsn: str, broker: PrivateMosquitto, timeout_s: float = 120.0) -> None:
    """Wait until ingest stores a probe batch (it has subscribed), then empty the tables.

    A batch published before ingest's first subscription would be dropped by the broker and
    resent only after the gateway's confirmation timeout, which would ruin the timing.
    """
    probe = Batch("probe-gw", 0, (Reading("probe-1", "battery", 50.0, "%", now_us(), 0),))
    deadline = time.monotonic() + timeout_s
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        while stored_count(dsn) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("ingest did not store a probe batch")
            await client.publish(batch_topic("probe-gw"), encode_batch(probe), qos=1)
            await asyncio.sleep(0.5)
    reset(dsn)


def baselines(server: BenchPostgres, work: Workload) -> dict[str, float]:
    """Readings/s of (a) server COPY, (b) write_row loop, (c) executemany, same transactions,
    best of ``ROUNDS`` interleaved runs."""
    dsn = server.dsn
    plain = work.batches()
    groups = chunks(decoded(plain), PER_WRITE)
    paths = [
        str(server.server_file(f"e2e-{n}.bin", copy_chunks(list(g))))  # type: ignore[arg-type]
        for n, g in enumerate(groups)
    ]
    rows = sum(len(b.readings) for b in plain)
    few = plain[: max(1, 100_000 // GATEWAY_BATCH)]
    work_of = {
        "server COPY": lambda: server_copy(dsn, paths, rows),
        "write_row loop": lambda: raw_copy(dsn, plain, PER_WRITE),
        "executemany": lambda: naive_insert(dsn, few, PER_WRITE),
    }
    rates: dict[str, float] = {}
    for _ in range(ROUNDS):  # interleaved, best of each: the first run on a cluster warms it
        for name, work_once in work_of.items():
            reset(dsn)
            start = time.perf_counter()
            written = work_once()
            rates[name] = max(rates.get(name, 0.0), written / (time.perf_counter() - start))
    reset(dsn)
    return rates


def _spy(pid: int, svg: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into a flame graph until interrupted."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--rate", "100", "--nonblocking"]
    return subprocess.Popen([*command, "--output", str(svg)], stdout=subprocess.DEVNULL)


@dataclass
class Workers:
    """The ingest process(es), and the rules worker when rules do not run inside ingest."""

    ingests: list[subprocess.Popen[bytes]]
    rules: subprocess.Popen[bytes] | None = None
    rules_log: Path | None = None

    @classmethod
    def start(cls, dsn: str, broker: PrivateMosquitto, replicas: int) -> Workers:
        """One ingest with its rules (``replicas`` 1), or as docker-compose: ``replicas``
        ingest processes in a shared group and a broker-fed `vigil rules run` beside them."""
        if replicas == 1:
            return cls([start_ingest(dsn, broker)])
        ingests = [start_ingest(dsn, broker, n) for n in range(1, replicas + 1)]
        log = broker.dir / "rules.log"
        rules = start_rules(dsn, broker, log)
        return cls(ingests, rules, log)

    def wait_rules_subscribed(self, timeout_s: float = 120.0) -> None:
        """Until the rules worker says it subscribed (it would miss the first batches)."""
        deadline = time.monotonic() + timeout_s
        # Polled: the worker's log line is the only sign it gives.
        while self.rules_log is not None and b"subscribed" not in self.rules_log.read_bytes():
            if time.monotonic() > deadline or (self.rules and self.rules.poll() is not None):
                raise RuntimeError(f"rules worker not subscribed: {self.rules_log.read_text()}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """Every worker process."""
        return [p.pid for p in self.ingests]

    def stop(self) -> None:
        """Terminate and reap them all."""
        for proc in [*self.ingests, *([self.rules] if self.rules else [])]:
            proc.terminate()
            proc.wait(10)


def run(
    durable: bool, works: list[Workload], profile: Path | None, replicas: int
) -> dict[str, float]:
    """Baselines, then the end-to-end run with CPU accounting, on one fresh cluster."""
    server, broker = BenchPostgres(durable=durable), PrivateMosquitto()
    server.start()
    broker.start()
    try:
        print(f"cluster: {server.settings()}")
        with TimescaleStore(server.dsn) as store:
            store.migrate()
        figures = baselines(server, works[0])
        workers = Workers.start(server.dsn, broker, replicas)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            asyncio.run(wait_subscribed(server.dsn, broker))
            workers.wait_rules_subscribed()
            if profile is not None:
                gateway_svg = profile.with_name(profile.stem + "-gateway.svg")
                spies = [_spy(workers.ingests[0].pid, profile), _spy(os.getpid(), gateway_svg)]
                time.sleep(1.0)  # py-spy attaches
            figures |= _end_to_end_accounted(server, broker, works, workers)
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(120)
            workers.stop()
    finally:
        with contextlib.suppress(Exception):
            broker.cleanup()
        server.cleanup()
    return figures


def _end_to_end_accounted(
    server: BenchPostgres, broker: PrivateMosquitto, works: list[Workload], workers: Workers
) -> dict[str, float]:
    """The best end-to-end rate of the rounds (as the baselines are best of their rounds), and
    CPU-seconds per million readings of every process over their timed windows."""

    def ingest_cpu() -> float:
        return sum(proc_cpu(pid) for pid in workers.pids())

    def rules_cpu() -> float:
        return proc_cpu(workers.rules.pid) if workers.rules else 0.0

    def cpu() -> dict[str, float]:
        return {
            "cpu ingest": ingest_cpu(),
            "cpu postgres": postgres_cpu(server),
            "cpu gateway": own_cpu(),
            "cpu mosquitto": proc_cpu(broker.proc.pid),
        }

    # Timed windows only: the resets and the audits between rounds are the bench's own work.
    # The rules worker may still evaluate the last batches after a window: it counts whole.
    figures: dict[str, float] = {}
    spent = dict.fromkeys(cpu(), 0.0)
    rules_before = rules_cpu()
    for n, work in enumerate(works, 1):
        reset(server.dsn)
        before = cpu()
        with tempfile.TemporaryDirectory() as tmp:
            rate = asyncio.run(end_to_end(server.dsn, broker, work, Path(tmp), f"bench-gw-{n}"))
        after = cpu()
        spent = {name: spent[name] + after[name] - before[name] for name in spent}
        figures["end to end"] = max(figures.get("end to end", 0.0), rate)
        audit(server.dsn, work)
    millions = sum(w.produced for w in works) / 1e6
    figures |= {name: seconds / millions for name, seconds in spent.items()}
    if workers.rules:
        figures["cpu rules"] = (rules_cpu() - rules_before) / millions
    figures["ingest peak RSS MB"] = max(peak_rss_mb(pid) for pid in workers.pids())
    return figures


def report(durable: bool, figures: dict[str, float]) -> None:
    """Print one cluster's figures and the ratios."""
    e2e = figures["end to end"]
    print(f"durability {'ON (as deployed)' if durable else 'OFF (as the tests run)'}:")
    if "cpu rules" in figures:
        print("  topology: ingest replicas in a shared group + `vigil rules run` (docker-compose)")
    for name in ("server COPY", "write_row loop", "executemany", "end to end"):
        print(f"  {name:<26}{figures[name]:>12,.0f} readings/s")
    print(f"  end to end / server COPY  {e2e / figures['server COPY']:>8.2f}  (target >= 0.6)")
    print(f"  end to end / write_row    {e2e / figures['write_row loop']:>8.2f}  (target >= 1.0)")
    print(f"  end to end / executemany  {e2e / figures['executemany']:>8.2f}")
    cpu = ", ".join(
        f"{name[4:]} {figures[name]:.2f}" for name in figures if name.startswith("cpu ")
    )
    print(f"  CPU-seconds per million readings: {cpu}")
    print(f"  ingest peak RSS: {figures['ingest peak RSS MB']:.0f} MB")


def main() -> None:
    """Measure the ceilings and the pipeline in one run per cluster and print the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=600_000)
    parser.add_argument("--durability", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--profile", type=Path, help="py-spy flame graphs (SVG) of ingest, and of the gateway"
    )
    parser.add_argument(
        "--ingest-replicas",
        type=int,
        default=2,
        help="N > 1: N ingest replicas in a shared group and a `vigil rules run` beside them,"
        " as docker-compose runs them (2, the default); 1: one ingest with its rules in process",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    works = Workload.of(args.readings, ROUNDS)
    print(
        f"{works[0].produced:,} readings of {PATCHES} patches per round, end to end best of"
        f" {ROUNDS} rounds as each baseline; 0 lost and 0 duplicated is checked every round"
    )
    settings = {"on": (True,), "off": (False,), "both": (True, False)}[args.durability]
    for durable in settings:
        profile = args.profile if durable else None
        report(durable, run(durable, works, profile, max(1, args.ingest_replicas)))


if __name__ == "__main__":
    main()
