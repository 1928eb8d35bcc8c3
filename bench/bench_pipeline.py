"""End-to-end sustained throughput, against the database's own ceilings measured in the same run.

    .venv/bin/python -m bench.bench_pipeline [--readings N]

Path: simulated patches → gateway (outbox, batches, QoS 1) → private Mosquitto → ingest worker
(a separate `vigil ingest run` process) → private TimescaleDB. The simulator's readings are
generated before the clock starts: on real hardware the patches compute them, not the gateway.
Baselines on the same database and table: the raw binary COPY ceiling and naive executemany.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench.bench_storage import make_batches, naive_insert, raw_copy, reset
from contract import Reading
from gateway.app import Gateway, GatewaySettings
from gateway.source import ReadingSink
from gateway.uplink import UplinkSettings
from infra.telemetry.timescale import TimescaleStore
from simulator.fleet import Fleet, FleetSpec
from testing_services import PrivateMosquitto, PrivatePostgres


class PregeneratedPatches:
    """A reading source that replays simulator ticks as fast as the gateway takes them."""

    name = "pregenerated"

    def __init__(self, ticks: Sequence[list[Reading]]) -> None:
        self.ticks = ticks

    async def run(self, sink: ReadingSink) -> None:
        """Hand every tick to the gateway."""
        for readings in self.ticks:
            await sink(readings)


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


def start_ingest(dsn: str, broker: PrivateMosquitto) -> subprocess.Popen[bytes]:
    """`vigil ingest run` as its own process, as it is deployed."""
    env = {
        **os.environ,
        "VIGIL_UPLINK_BROKER__PORT": str(broker.port),
        "VIGIL_INGEST__STORAGE_URL": dsn,
        "VIGIL_INGEST__CLIENT_ID": "bench-ingest",
        "VIGIL_INGEST__MAX_MESSAGES_PER_WRITE": "16",
    }
    vigil = Path(sys.executable).with_name("vigil")
    return subprocess.Popen([str(vigil), "ingest", "run"], env=env)


async def end_to_end(dsn: str, broker: PrivateMosquitto, readings: int, workdir: Path) -> float:
    """Readings/s through the whole path, measured until the last reading is in the database."""
    patches = 500
    fleet = Fleet(FleetSpec(seed=3, patches=patches, equipment=0))
    ticks = [fleet.patch_readings(k) for k in range(max(1, readings // (patches * 6)))]
    produced, value_sum = fleet.tally.readings, fleet.tally.value_sum
    settings = GatewaySettings(
        gateway_id="bench-gw",
        outbox_path=workdir / "outbox.db",
        uplink=UplinkSettings(port=broker.port, batch_max_readings=5_000, max_inflight=8),
    )
    start = time.perf_counter()
    async with Gateway(settings, [PregeneratedPatches(ticks)]) as gateway:
        await gateway.sources_done()
        await gateway.drained()
        # Acknowledged by the broker is not yet stored: poll the database for the last one.
        for _ in range(100_000):
            if stored(dsn)[0] >= produced:
                break
            await asyncio.sleep(0.02)
    seconds = time.perf_counter() - start
    count, total, dups = stored(dsn)
    assert count == produced and dups == 0, (count, produced, dups)
    assert abs(total - value_sum) < 1e-6 * max(1.0, abs(value_sum)), (total, value_sum)
    return produced / seconds


def main() -> None:
    """Measure the ceilings and the pipeline in one run and print the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=600_000)
    args = parser.parse_args()
    postgres, broker = PrivatePostgres(), PrivateMosquitto()
    postgres.start()
    broker.start()
    dsn = f"postgresql://postgres@127.0.0.1:{postgres.port}/vigil"
    try:
        with TimescaleStore(dsn) as store:
            store.migrate()
        batches = make_batches(args.readings, "ceiling")
        reset(dsn)
        start = time.perf_counter()
        raw_copy(dsn, batches)
        copy_rate = args.readings / (time.perf_counter() - start)
        reset(dsn)
        naive_rows = min(args.readings, 100_000)
        start = time.perf_counter()
        naive_insert(dsn, batches[: naive_rows // 1_000])
        naive_rate = naive_rows / (time.perf_counter() - start)
        reset(dsn)
        ingest = start_ingest(dsn, broker)
        try:
            time.sleep(2.0)  # let it subscribe; its persistent session would queue anyway
            with tempfile.TemporaryDirectory() as tmp:
                e2e_rate = asyncio.run(end_to_end(dsn, broker, args.readings, Path(tmp)))
        finally:
            ingest.terminate()
            ingest.wait(10)
    finally:
        with contextlib.suppress(Exception):
            broker.cleanup()
        postgres.cleanup()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print(f"raw binary COPY ceiling   {copy_rate:>12,.0f} readings/s")
    print(f"naive executemany         {naive_rate:>12,.0f} readings/s")
    print(f"end to end (0 lost, 0 dup){e2e_rate:>12,.0f} readings/s")
    print(f"end to end / COPY ceiling {e2e_rate / copy_rate:>12.2f}  (target >= 0.50)")
    print(f"end to end / executemany  {e2e_rate / naive_rate:>12.2f}")


if __name__ == "__main__":
    main()
