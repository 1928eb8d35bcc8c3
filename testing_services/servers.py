"""Private Mosquitto and PostgreSQL+TimescaleDB instances that tests and benchmarks start.

Each runs on a free loopback port with its files in a temp dir, so they never touch the
machine's own services on 1883 or 5432; tests kill and restart them to simulate outages.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


_HANDED_OUT: set[int] = set()
# Its own generator: tests may seed the global one, and parallel runs must not pick alike.
_RANDOM = random.SystemRandom()
_LOWEST = 10_000  # below: well-known and registered services' ports


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A TCP port free on every address right now, never handed out before by this process.

    Chosen below the ephemeral range: a port the kernel picked for us (bind to 0) is one it
    also gives to outgoing connections, so another process's client socket can take it
    before our server binds it (seen: "Address already in use" on 0.0.0.0 under load).
    """
    candidates = list(range(_LOWEST, _ephemeral_low()))
    _RANDOM.shuffle(candidates)
    for port in candidates[:200]:
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # covers loopback too
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # no free port below the ephemeral range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class PrivateMosquitto:
    """A mosquitto broker of our own; ``kill()`` and ``start()`` simulate an outage."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="vigil-mqtt-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "mosquitto.conf"
        # Persistence keeps queued QoS 1 messages for persistent sessions across restarts.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "message_size_limit 8388608\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )

    def start(self) -> None:
        """Start (or restart) the broker on the same port and wait until it listens."""
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to its own user, which must own the work dir
            # or it cannot write its persistence file (sessions would not survive a restart).
            with contextlib.suppress(LookupError):
                shutil.chown(self.dir, "mosquitto")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL the broker: an abrupt uplink outage."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Stop the broker cleanly (it saves its persistence file)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Stop and remove the work dir."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL 15 cluster with TimescaleDB preloaded, run as the postgres user."""

    def __init__(self, *, durable: bool = False) -> None:
        # durable=True keeps synchronous_commit on: a commit ingest confirmed must survive
        # kill(), which skips the WAL writer's flush that asynchronous commit relies on.
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"

    @property
    def dsn(self) -> str:
        """A libpq connection string for the ``vigil`` database."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=vigil"

    @property
    def running(self) -> bool:
        """Whether the cluster's postmaster is up (its pid file exists)."""
        return (self.data / "postmaster.pid").exists()

    def _as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True)

    def start(self) -> None:
        """initdb (first time), start, and create the vigil database with the extension."""
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 missing: run scripts/install-test-services.sh")
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sockdir, "postgres")
        if not self.data.exists():
            self._as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockdir} "
            "-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100 -c shared_buffers=256MB"
        )
        if self.durable:
            options += " -c synchronous_commit=on"  # the later setting wins
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "postgres.log"),
            "-w",
            "start",
        )
        wait_for_port(self.port)
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'vigil'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE vigil")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def stop(self) -> None:
        """Stop the cluster quickly."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    def kill(self) -> None:
        """Stop the cluster abruptly (``-m immediate``): every connection drops, no checkpoint."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
            )

    def cleanup(self) -> None:
        """Stop and remove everything."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
