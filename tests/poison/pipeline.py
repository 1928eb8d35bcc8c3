"""A real poison pipeline: two Mosquittos, `vigil gateway run` and `vigil ingest run` processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from gateway import dead_letters
from gateway.dead_letters import StoredLetter
from infra.telemetry import DeadLetter, ReadingStore, open_store
from tests.servers import PrivateMosquitto, PrivatePostgres

VIGIL = Path(sys.executable).with_name("vigil")
GATEWAY_ID = "gw-poison"
SITE = "ward-p"


@dataclass
class Pipeline:
    """The running processes and where to look at what they kept."""

    site: PrivateMosquitto
    uplink: PrivateMosquitto
    outbox: Path
    store: ReadingStore
    gateway: subprocess.Popen[bytes]
    ingest: subprocess.Popen[bytes]
    logs: Path

    def alive(self) -> bool:
        """Whether both processes still run."""
        return self.gateway.poll() is None and self.ingest.poll() is None

    def gateway_letters(self, after_id: int) -> list[StoredLetter]:
        """Gateway outbox dead letters newer than ``after_id`` (read-only, beside the gateway)."""
        if not self.outbox.exists():
            return []
        with contextlib.closing(dead_letters.open_read_only(self.outbox)) as db:
            try:
                return [x for x in dead_letters.page(db, 1000) if x.id > after_id]
            except sqlite3.OperationalError:
                return []  # the schema is not there yet

    def ingest_letters(self) -> list[DeadLetter]:
        """Every dead letter of the ingest store."""
        return self.store.dead_letters(10_000)

    def stored(self, device_id: str) -> list[tuple[str, int]]:
        """(metric, seq) of the readings stored for ``device_id``."""
        return [(r.metric, r.seq) for r in self.store.fetch_readings(device_id=device_id)]

    def tracebacks(self) -> bool:
        """Whether either process logged a traceback (a poison took an unexpected path)."""
        logs = (self.logs / name for name in ("gateway.log", "ingest.log"))
        return any(
            "Traceback" in path.read_text(errors="replace") for path in logs if path.exists()
        )

    def log_tail(self) -> str:
        """The end of both processes' logs, for a failure message."""
        parts = []
        for name in ("gateway.log", "ingest.log"):
            path = self.logs / name
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name}\n{text[-3000:]}")
        return "\n".join(parts)


def _spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(VIGIL), *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=out
        )


@contextlib.contextmanager
def database(server: PrivatePostgres) -> Iterator[str]:
    """A fresh TimescaleDB database for one pipeline (the ``timescale_dsn`` fixture is per test)."""
    name = f"p_{uuid.uuid4().hex[:12]}"
    admin = server.dsn.replace("dbname=vigil", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = server.dsn.replace("dbname=vigil", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    try:
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def running_pipeline(workdir: Path, storage_url: str) -> Iterator[Pipeline]:
    """Start brokers, ingest and gateway; stop everything on exit."""
    site, uplink = PrivateMosquitto(), PrivateMosquitto()
    outbox = workdir / "outbox.db"
    env = {
        **os.environ,
        "PYTHONFAULTHANDLER": "1",
        "VIGIL_CONFIG": str(workdir / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(uplink.port),
        "VIGIL_SITE_BROKER__PORT": str(site.port),
        "VIGIL_GATEWAY__ID": GATEWAY_ID,
        "VIGIL_GATEWAY__SITE": SITE,
        "VIGIL_GATEWAY__OUTBOX_PATH": str(outbox),
        "VIGIL_GATEWAY__LINGER_S": "0.01",
        "VIGIL_GATEWAY__CONFIRM_TIMEOUT_S": "2",
        "VIGIL_INGEST__STORAGE_URL": storage_url,
        "VIGIL_INGEST__CLIENT_ID": "poison-ingest",
    }
    procs: list[subprocess.Popen[bytes]] = []
    store = open_store(storage_url)
    try:
        site.start()
        uplink.start()
        store.migrate()  # so the test can read before ingest has started
        procs.append(_spawn(["ingest", "run", "--no-rules"], env, workdir, workdir / "ingest.log"))
        procs.append(_spawn(["gateway", "run"], env, workdir, workdir / "gateway.log"))
        yield Pipeline(site, uplink, outbox, store, procs[1], procs[0], workdir)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.close()
        site.cleanup()
        uplink.cleanup()
