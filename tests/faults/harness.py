"""Shared pieces of the fault tests: the expected readings, a running ingest, reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import psycopg

from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from simulator.fleet import Fleet, FleetSpec

VIGIL = Path(sys.executable).with_name("vigil")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a deterministic fleet produces over some ticks: count and value sum."""

    count: int
    value_sum: float


def expected_patch_readings(spec: FleetSpec, ticks: int) -> Expected:
    """Regenerate the fleet's patch readings from its spec: the same seed, the same readings."""
    fleet = Fleet(spec)
    for tick in range(ticks):
        fleet.patch_readings(tick)
    return Expected(fleet.tally.readings, fleet.tally.value_sum)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What storage holds, counted three ways."""

    count: int
    value_sum: float
    duplicate_keys: int  # reading keys stored more than once (GROUP BY … HAVING count > 1)
    batch_readings: int  # readings the claimed batches carried (ingested_batches.reading_count)


def reconcile(dsn: str) -> Reconciliation:
    """Count, sum, duplicate keys and per-batch totals of what ingest stored."""
    with psycopg.connect(dsn) as conn:
        count, value_sum = conn.execute(
            "SELECT count(*), coalesce(sum(value), 0) FROM readings"
        ).fetchone() or (0, 0.0)
        dup = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, metric, seq, ts"
            " HAVING count(*) > 1) AS d"
        ).fetchone()
        carried = conn.execute(
            "SELECT coalesce(sum(reading_count), 0) FROM ingested_batches"
        ).fetchone()
    assert dup is not None and carried is not None
    return Reconciliation(int(count), float(value_sum), int(dup[0]), int(carried[0]))


@dataclass
class IngestRun:
    """A running ingest worker and how often its supervisor had to restart it."""

    worker: IngestWorker
    restarts: int = 0
    task: asyncio.Task[None] | None = None


async def _supervise(run: IngestRun) -> None:
    """Restart the worker when a lost broker kills it, as systemd's Restart=always would.

    IngestWorker.run() only catches a bare MqttError, but a broker loss reaches it wrapped in
    the ExceptionGroup of its TaskGroup when the loss surfaces in its receive task, so today
    the worker sometimes dies (racy: aiomqtt's own __aexit__ error sometimes replaces it).
    """
    while True:
        try:
            await run.worker.run()
        except BaseExceptionGroup as group:
            if not group.subgroup(aiomqtt.MqttError):
                raise
            run.restarts += 1
            await asyncio.sleep(0.2)  # the restart delay it simulates (systemd's RestartSec)


@contextlib.asynccontextmanager
async def running_ingest(port: int, dsn: str, supervised: bool = True) -> AsyncIterator[IngestRun]:
    """An IngestWorker with a TimescaleStore, persistent MQTT v5 session, until exit."""
    store = TimescaleStore(dsn)
    store.migrate()
    worker = IngestWorker(
        IngestSettings(port=port, client_id="fault-ingest", reconnect_backoff_s=0.2), store
    )
    run = IngestRun(worker)
    task = asyncio.create_task(_supervise(run) if supervised else worker.run())
    run.task = task
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 15)
        # A deliberate gap: Mosquitto autosaves every second and tells nobody when it did, so a
        # SIGKILL sooner could forget the subscription.
        await asyncio.sleep(1.5)
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def wait_until_stored(dsn: str, count: int, timeout_s: float = 120) -> Reconciliation:
    """Poll storage until ``count`` readings are there (or time runs out); return the tally."""
    deadline = time.monotonic() + timeout_s
    while True:
        tally = await asyncio.to_thread(reconcile, dsn)
        if tally.count >= count or time.monotonic() > deadline:
            return tally
        await asyncio.sleep(0.2)  # polled with a deadline; on timeout the caller gets the tally


def appended_total(outbox_path: Path) -> int:
    """Readings ever appended to an outbox: reading ids are never reused."""
    if not outbox_path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(outbox_path, timeout=5)) as db:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'appended_through'").fetchone()
        except sqlite3.OperationalError:
            return 0  # schema not created yet
    return int(row[0]) if row else 0


def open_batches(outbox_path: Path) -> int:
    """Batches cut and not yet confirmed by ingest, read straight from the file."""
    with contextlib.closing(sqlite3.connect(outbox_path, timeout=5)) as db:
        return int(db.execute("SELECT count(*) FROM batches").fetchone()[0])


def start_gateway(
    tmp: Path, outbox_path: Path, uplink_port: int, *args: str, **env_extra: str
) -> subprocess.Popen[bytes]:
    """`vigil gateway run` as a separate process, configured through VIGIL_… variables."""
    env = {
        **os.environ,
        "VIGIL_CONFIG": str(tmp / "absent.toml"),
        "VIGIL_GATEWAY__ID": "gw-fault",
        "VIGIL_GATEWAY__OUTBOX_PATH": str(outbox_path),
        "VIGIL_GATEWAY__BRIDGE_EQUIPMENT": "false",
        "VIGIL_GATEWAY__BATCH_MAX_READINGS": "500",
        "VIGIL_UPLINK_BROKER__PORT": str(uplink_port),
        "VIGIL_SIMULATOR__SEED": "11",
        **env_extra,
    }
    # Popen keeps its own copy of the log's descriptor; ours can close at once.
    with open(tmp / "gateway.log", "ab") as log:
        return subprocess.Popen(
            [str(VIGIL), "gateway", "run", *args],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
