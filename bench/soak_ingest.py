"""Soak the ingest worker: peak RSS, and whether its memory grows over a sustained load.

    .venv/bin/python -m bench.soak_ingest [--minutes 10] [--gateways 8] [--patches 500]
                                          [--durability on|off] [--sample-s 2]

A private Mosquitto and a private TimescaleDB (durability on by default: fsync,
synchronous_commit, full_page_writes, as deployed), and ``vigil ingest run`` as its own process
(the production CLI, with the rules in process as deployed by default: the dressing and
equipment packs). A load generator publishes v2 gateway batches (QoS 1) for ``--minutes`` as
fast as ingest takes them: each simulated ward gateway keeps at most ``--window`` batches
unconfirmed, as a gateway's uplink does, and sends the next one when ingest confirms one.
Each batch holds two ticks of every series of its ward (``--patches`` patches × 5 metrics),
stamped with the wall clock, so the rules evaluate every reading.

Ingest's VmRSS is sampled from /proc every ``--sample-s``. Printed: readings/s, peak RSS
(VmHWM), mean RSS in the first and the last minute, the slope of RSS over time after the first
minute (least squares, MB/min) with a verdict, and the exactly-once check at the end (readings
stored == readings published, no duplicate key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import numpy as np
import psycopg

from bench.bench_pipeline import wait_subscribed
from bench.bench_rules import LEVELS, PATCH_METRICS
from bench.durable_postgres import BenchPostgres
from bench.wire_v2 import payload_v2
from contract import decode_batch, decode_confirmation
from contract.catalog import METRICS
from contract.topics import batch_topic, confirm_topic
from infra.telemetry.timescale import TimescaleStore
from infra.time_us import now_us
from testing_services import PrivateMosquitto

TICKS_PER_BATCH = 2
WARM_UP_S = 60.0  # RSS in the first minute is the baseline; the slope is fitted after it


@dataclass
class Ward:
    """One simulated ward gateway: its device table and the next batch's sequence numbers."""

    gateway_id: str
    patches: int
    rng: np.random.Generator
    batch_seq: int = 0
    last_ts: int = 0
    devices: list[str] = field(default_factory=list)
    device: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<u4"))
    series: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<u4"))
    level: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bounds: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.devices = [f"{self.gateway_id}-patch-{i}" for i in range(self.patches)]
        metrics = list(PATCH_METRICS)
        self.pairs = [(m, METRICS[m].unit) for m in metrics]
        # One tick: every patch's metrics, patch by patch (the simulator's order).
        device = np.repeat(np.arange(self.patches), len(metrics))
        series = np.tile(np.arange(len(metrics)), self.patches)
        self.device = np.tile(device, TICKS_PER_BATCH).astype("<u4")
        self.series = np.tile(series, TICKS_PER_BATCH).astype("<u4")
        self.level = np.array([LEVELS[metrics[k]][0] for k in self.series.tolist()])
        # A third of the spread: white noise, unlike the benchmark's slow walk, would raise
        # alerts all the time at the full spread.
        self.spread = np.array([LEVELS[metrics[k]][1] / 3 for k in self.series.tolist()])
        specs = [METRICS[metrics[k]] for k in self.series.tolist()]
        self.bounds = np.array([s.low for s in specs]), np.array([s.high for s in specs])

    @property
    def readings_per_batch(self) -> int:
        """Readings in each batch of this ward."""
        return len(self.device)

    def next_payload(self) -> bytes:
        """The next batch, encoded as wire v2, stamped with the wall clock."""
        n, per_tick = len(self.device), len(self.device) // TICKS_PER_BATCH
        stamp = max(now_us(), self.last_ts + TICKS_PER_BATCH)
        self.last_ts = stamp
        ts = np.repeat(stamp - np.arange(TICKS_PER_BATCH - 1, -1, -1), per_tick).astype("<i8")
        value = np.round((self.level + self.spread * self.rng.standard_normal(n)) * 4) / 4
        value = np.clip(value, *self.bounds)
        seq = (self.batch_seq * TICKS_PER_BATCH + np.arange(n) // per_tick).astype("<i8")
        columns = (self.device, self.series, value, ts, seq)
        self.batch_seq += 1
        return payload_v2(self.gateway_id, self.batch_seq - 1, self.devices, self.pairs, columns)


@dataclass
class Load:
    """What the generator published and ingest confirmed."""

    published_batches: int = 0
    published_readings: int = 0
    confirmed_readings: int = 0
    unconfirmed: dict[tuple[str, int], int] = field(default_factory=dict)
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # nothing unconfirmed

    def confirm(self, gateway_id: str, batch_seqs: tuple[int, ...]) -> int:
        """Forget confirmed batches (repeats are no-ops); how many were outstanding."""
        settled = 0
        for seq in batch_seqs:
            readings = self.unconfirmed.pop((gateway_id, seq), None)
            if readings is not None:
                self.confirmed_readings += readings
                settled += 1
        if not self.unconfirmed:
            self.drained.set()
        return settled


@dataclass
class Sample:
    """Ingest's memory at one moment."""

    at_s: float
    rss_mb: float
    hwm_mb: float
    confirmed: int


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def start_ingest(
    dsn: str,
    broker: PrivateMosquitto,
    rules: bool,
    traced: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`vigil ingest run` as its own process, as it is deployed (under tracemalloc, writing
    to ``traced``, if given: ``bench.traced_ingest``)."""
    env = {
        **os.environ,
        "VIGIL_UPLINK_BROKER__PORT": str(broker.port),
        "VIGIL_INGEST__STORAGE_URL": dsn,
        "VIGIL_INGEST__CLIENT_ID": "soak-ingest",
        # A rules checkpoint of its own: one left by an earlier run would be restored.
        "VIGIL_RULES__SNAPSHOT_PATH": str(broker.dir / "rules-engine.snap"),
        **(extra_env or {}),
    }
    flag = "--rules" if rules else "--no-rules"
    if traced is not None:
        command = [sys.executable, "-m", "bench.traced_ingest", str(traced), flag]
    else:
        command = [str(Path(sys.executable).with_name("vigil")), "ingest", "run", flag]
    return subprocess.Popen(command, env=env)


def stored(dsn: str, duplicates: bool = False) -> tuple[int, int]:
    """Readings stored, and (if asked) duplicate keys among them."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        dups = None
        if duplicates:
            dups = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, metric, seq, ts"
                " HAVING count(*) > 1) d"
            ).fetchone()
    return int(row[0] if row else 0), int(dups[0] if dups else 0)


def check_payload(ward: Ward) -> None:
    """The hand-built payload decodes, valid, as a production gateway batch would."""
    probe = Ward(ward.gateway_id + "-check", ward.patches, np.random.default_rng(0))
    decoded = decode_batch(probe.next_payload())
    assert not decoded.rejected, decoded.rejected[:3]
    assert len(decoded.batch.readings) == probe.readings_per_batch


async def publish_ward(
    client: aiomqtt.Client, ward: Ward, load: Load, room: asyncio.Semaphore, until: float
) -> None:
    """Publish ``ward``'s batches while its window has room, until ``until`` (monotonic)."""
    topic = batch_topic(ward.gateway_id)
    while time.monotonic() < until:
        await room.acquire()
        seq, payload = ward.batch_seq, ward.next_payload()
        load.unconfirmed[(ward.gateway_id, seq)] = ward.readings_per_batch
        await client.publish(topic, payload, qos=1)
        load.published_batches += 1
        load.published_readings += ward.readings_per_batch


async def receive_confirms(
    client: aiomqtt.Client, load: Load, rooms: dict[str, asyncio.Semaphore]
) -> None:
    """Release a ward's window slot per batch ingest confirms."""
    async for message in client.messages:
        payload = message.payload
        if not isinstance(payload, bytes):
            continue
        confirmation = decode_confirmation(payload)
        room = rooms.get(confirmation.gateway_id)
        settled = load.confirm(confirmation.gateway_id, confirmation.batch_seqs)
        for _ in range(settled if room is not None else 0):
            room.release()


async def sample_memory(pid: int, load: Load, every_s: float, out: list[Sample]) -> None:
    """Append ingest's RSS every ``every_s`` until cancelled."""
    start = time.monotonic()
    while True:
        rss, hwm = memory_mb(pid)
        out.append(Sample(time.monotonic() - start, rss, hwm, load.confirmed_readings))
        await asyncio.sleep(every_s)


@dataclass(frozen=True)
class SoakArgs:
    """The soak's shape, and how ingest runs."""

    minutes: float
    gateways: int
    patches: int
    window: int
    sample_s: float
    env: dict[str, str] = field(default_factory=dict)  # more environment for ingest
    samples: Path | None = None  # where to write the RSS samples (CSV)


async def generate(port: int, pid: int, args: SoakArgs) -> tuple[Load, list[Sample], float]:
    """Publish for ``args.minutes`` and sample ingest; then wait for the last confirmations."""
    wards = [
        Ward(f"soak-gw-{g}", args.patches, np.random.default_rng(g)) for g in range(args.gateways)
    ]
    check_payload(wards[0])
    load, samples = Load(), []
    rooms = {w.gateway_id: asyncio.Semaphore(args.window) for w in wards}
    inflight = args.window * len(wards)
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=inflight) as client:
        for w in wards:
            await client.subscribe(confirm_topic(w.gateway_id), qos=1)
        confirms = asyncio.create_task(receive_confirms(client, load, rooms))
        sampler = asyncio.create_task(sample_memory(pid, load, args.sample_s, samples))
        start = time.monotonic()
        until = start + args.minutes * 60
        await asyncio.gather(
            *(publish_ward(client, w, load, rooms[w.gateway_id], until) for w in wards)
        )
        seconds = time.monotonic() - start
        if load.unconfirmed:
            load.drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.drained.wait(), 300)
        for task in (sampler, confirms):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return load, samples, seconds


def slope_mb_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time after the warm-up minute, MB per minute."""
    late = [s for s in samples if s.at_s >= WARM_UP_S]
    if len(late) < 3:
        return 0.0
    at = np.array([s.at_s / 60 for s in late])
    rss = np.array([s.rss_mb for s in late])
    return float(np.polyfit(at, rss, 1)[0])


def report(load: Load, samples: list[Sample], seconds: float, limit: float) -> bool:
    """Print the figures; whether the soak passed (no growth)."""
    published = [s for s in samples if s.at_s <= seconds]
    first = [s.rss_mb for s in published if s.at_s < WARM_UP_S]
    last = [s.rss_mb for s in published if s.at_s >= seconds - WARM_UP_S]
    slope = slope_mb_per_min(published)
    peak = max(s.hwm_mb for s in samples)
    print(f"published: {load.published_readings:,} readings in {load.published_batches:,} batches")
    print(f"throughput: {load.published_readings / seconds:,.0f} readings/s over {seconds:.0f} s")
    print(f"ingest peak RSS (VmHWM): {peak:.0f} MB")
    print(f"ingest RSS first minute: {np.mean(first):.0f} MB (max {max(first):.0f})")
    print(f"ingest RSS last minute:  {np.mean(last):.0f} MB (max {max(last):.0f})")
    flat = slope <= limit
    verdict = "no growth" if flat else "GROWS"
    print(f"RSS slope after the first minute: {slope:+.2f} MB/min ({verdict}; limit {limit})")
    return flat


def run(
    args: SoakArgs, durable: bool, rules: bool, limit: float, traced: Path | None = None
) -> bool:
    """One soak on fresh private servers; whether it passed (flat RSS, exactly once)."""
    server, broker = BenchPostgres(durable=durable), PrivateMosquitto()
    server.start()
    broker.start()
    try:
        print(f"cluster: {server.settings()}; rules in ingest: {rules}; loadavg {loadavg()}")
        print(f"ingest environment added: {args.env}")
        with TimescaleStore(server.dsn) as store:
            store.migrate()
        ingest = start_ingest(server.dsn, broker, rules, traced, args.env)
        try:
            asyncio.run(wait_subscribed(server.dsn, broker))
            load, samples, seconds = asyncio.run(generate(broker.port, ingest.pid, args))
            flat = report(load, samples, seconds, limit)
            if args.samples is not None:
                write_samples(args.samples, samples)
        finally:
            ingest.terminate()
            ingest.wait(30)
        count, dups = stored(server.dsn, duplicates=True)
        once = count == load.published_readings and dups == 0 and not load.unconfirmed
        print(
            f"exactly once: stored {count:,} == published {load.published_readings:,}, "
            f"{dups} duplicate keys, {len(load.unconfirmed)} unconfirmed: "
            f"{'OK' if once else 'FAILED'}"
        )
        print(f"loadavg at the end: {loadavg()}")
        return flat and once
    finally:
        with contextlib.suppress(Exception):
            broker.cleanup()
        server.cleanup()


def write_samples(path: Path, samples: list[Sample]) -> None:
    """The RSS samples as CSV: seconds, VmRSS MB, VmHWM MB, readings confirmed."""
    rows = [f"{s.at_s:.1f},{s.rss_mb:.1f},{s.hwm_mb:.1f},{s.confirmed}" for s in samples]
    path.write_text("at_s,rss_mb,hwm_mb,confirmed\n" + "\n".join(rows) + "\n")


def loadavg() -> str:
    """The machine's load averages (the machine is shared: figures are read against them)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    """Parse the arguments, soak, exit 1 if memory grew or a reading was lost or repeated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gateways", type=int, default=8)
    parser.add_argument("--patches", type=int, default=500, help="patches per ward gateway")
    parser.add_argument("--window", type=int, default=8, help="unconfirmed batches per gateway")
    parser.add_argument("--sample-s", type=float, default=2.0)
    parser.add_argument("--durability", choices=("on", "off"), default="on")
    parser.add_argument("--no-rules", action="store_true", help="ingest without in-process rules")
    parser.add_argument("--limit", type=float, default=1.0, help="MB/min counted as growth")
    parser.add_argument(
        "--tracemalloc", type=Path, help="trace ingest's allocations, growth report to this file"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for ingest's environment"
    )
    parser.add_argument("--samples", type=Path, help="write the RSS samples to this CSV")
    ns = parser.parse_args()
    env = dict(item.split("=", 1) for item in ns.env)
    args = SoakArgs(ns.minutes, ns.gateways, ns.patches, ns.window, ns.sample_s, env, ns.samples)
    ok = run(args, ns.durability == "on", not ns.no_rules, ns.limit, ns.tracemalloc)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
