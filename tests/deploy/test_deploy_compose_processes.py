"""docker-compose.yml run as plain processes: a simulated alert becomes a dispatched ticket.

No Docker engine runs here, so every service is started as compose would start it, in
depends_on order, from its own command and environment in docker-compose.yml, with only what
differs on this machine rewritten (tests/deploy/compose.py ``Host``): service names become
loopback addresses, published ports free ones, named volumes directories, bind mounts the
repository's files. The broker is the tests' Mosquitto with deploy/mosquitto.conf and deploy/acl
(TLS, client certificates, ACLs) and the certificates the bootstrap issued; the database is the
tests' PostgreSQL + TimescaleDB. Each wait is the service's own healthcheck command, run here.
Prometheus and Grafana are not started (no binaries here; their configuration is checked by
tests/deploy/test_deploy_dashboards.py).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.deploy.compose import ROOT, Host, compose, depends_on, services, start_order
from tests.servers import PrivateMosquitto, PrivatePostgres, free_port
from tests.service.live import fresh_database
from tests.waiting import wait_until

VENV_BIN = Path(sys.executable).parent
NOT_HERE = {"prometheus", "grafana"}  # no binaries on this machine
BROKER_UID = "1883:1883"  # the mosquitto user of the eclipse-mosquitto image


@dataclass
class Stack:
    """The running processes of the stack and where their output goes."""

    host: Host
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    broker: PrivateMosquitto | None = None

    @property
    def broker_log(self) -> Path:
        """Where the broker logs who connected, under which client id and certificate."""
        return self.host.volumes["broker-data"] / "mosquitto.log"

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        path = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
        # No vigil.toml of the working directory: the compose environment is the whole config.
        return {**base, "PATH": path, "VIGIL_CONFIG": str(self.logs / "absent.toml")} | (
            self.host.environment(service)
        )

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def start(self, name: str, service: dict[str, Any]) -> None:
        """Start one vigil service's command in the background, as the container would."""
        out = (self.logs / f"{name}.log").open("wb")
        argv = [str(VENV_BIN / "vigil"), *self.host.command(service)]
        self.procs[name] = subprocess.Popen(
            argv, env=self.env(service), stdout=out, stderr=subprocess.STDOUT, cwd=self.logs
        )

    def run_once(self, name: str, service: dict[str, Any]) -> None:
        """A one-shot service: run its script to the end (service_completed_successfully)."""
        assert service["entrypoint"] == ["sh", "-euc"]
        done = subprocess.run(
            ["sh", "-euc", self.host.script(service)],
            env=self.env(service),
            capture_output=True,
            text=True,
            timeout=240,
            cwd=self.logs,
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        self.outputs[name] = self.outputs.get(name, "") + done.stdout

    def healthy(self, name: str) -> bool:
        """The service's own healthcheck command, run here, exits 0."""
        if name == "timescaledb":
            return True  # the tests' cluster, up before the stack (pg_isready says the same)
        proc = self.procs.get(name)
        if proc is not None:
            assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.log(name)}"
        argv = self.host.healthcheck(services()[name], proc.pid if proc else None)
        if argv[0] == "python":
            argv[0] = sys.executable
        done = subprocess.run(argv, capture_output=True, timeout=60)
        return done.returncode == 0

    def wait_for(self, name: str, condition: str) -> None:
        """What compose waits for before starting a dependant."""
        if condition == "service_healthy":
            wait_until(lambda: self.healthy(name), 120, f"{name} healthy")
        elif condition == "service_completed_successfully":
            assert name in self.outputs, f"{name} has not run"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.broker is not None:
            self.broker.cleanup()


def _pg_url(dsn: str) -> str:
    """A libpq keyword DSN as the postgresql:// URL the compose environment uses."""
    parts = dict(item.split("=", 1) for item in dsn.split())
    return f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"


def _start_broker(stack: Stack) -> PrivateMosquitto:
    """deploy/mosquitto.conf with the broker service's mounts and published port rewritten."""
    service = services()["broker"]
    config = stack.host.path(service, "/mosquitto/config/mosquitto.conf")
    text = Path(config).read_text()
    for path in sorted(set(re.findall(r"/mosquitto/\S+", text)), key=len, reverse=True):
        text = text.replace(path, stack.host.path(service, path))
    port = stack.host.ports[8883]
    text = text.replace("listener 8883 0.0.0.0", f"listener {port} 127.0.0.1")
    # The container logs to stderr; here to a file the test reads (the broker's own user can
    # write its data directory, which PrivateMosquitto hands it).
    text = text.replace("log_dest stderr", f"log_dest file {stack.broker_log}")
    assert f"listener {port} 127.0.0.1" in text and "require_certificate true" in text
    broker = PrivateMosquitto(stack.host.volumes["broker-data"])
    broker.port = port
    broker.conf = stack.logs / "mosquitto.conf"
    broker.conf.write_text(text)
    broker.start()
    return broker


@pytest.fixture
def stack(postgres_server: PrivatePostgres) -> Iterator[Stack]:
    # Not pytest's tmp_path: mosquitto, dropped to its own user, must traverse to the PKI.
    top = Path(tempfile.mkdtemp(prefix="vigil-compose-"))
    top.chmod(0o755)
    volumes = {name: top / "volumes" / name for name in compose()["volumes"]}
    for directory in volumes.values():
        directory.mkdir(parents=True)
        directory.chmod(0o755)
    logs = top / "logs"
    logs.mkdir()
    with fresh_database(postgres_server) as dsn:
        host = Host(
            volumes=volumes,
            hosts={"broker": "localhost", "timescaledb": "127.0.0.1", "api": "127.0.0.1"},
            ports={8883: free_port(), 5432: postgres_server.port, 8000: free_port(), 9101: 0}
            # Replicas share a container port; as processes on one host each takes any free one.
            | dict.fromkeys((9102, 9103, 9104, 9105), 0),
            database_url=_pg_url(dsn),
            replaced=_broker_user(),
        )
        host.ports[9101] = free_port()  # the gateway's metrics
        running = Stack(host, logs)
        try:
            yield running
        finally:
            running.stop()
            shutil.rmtree(top, ignore_errors=True)


def _broker_user() -> dict[str, str]:
    """The image's mosquitto uid, as this machine's mosquitto user (root here)."""
    with contextlib.suppress(KeyError):
        user = pwd.getpwnam("mosquitto")
        return {BROKER_UID: f"{user.pw_uid}:{user.pw_gid}"}
    return {}


def _start(stack: Stack, name: str, service: dict[str, Any]) -> None:
    for dependency, condition in depends_on(service).items():
        if dependency not in NOT_HERE:
            stack.wait_for(dependency, condition)
    if name == "timescaledb":
        return  # the tests' cluster, already up
    if name == "broker":
        stack.broker = _start_broker(stack)
    elif service.get("restart") == "no":
        stack.run_once(name, service)
    else:
        stack.start(name, service)


def _census(url: str) -> dict[str, object]:
    """What each stage left in the database, for a failure message."""
    queries = {
        "readings": "SELECT count(*) FROM readings",
        "alerts": "SELECT rule_id, transition, published_at IS NOT NULL, count(*) FROM alerts"
        " GROUP BY 1, 2, 3",
        "tickets": "SELECT state, count(*) FROM service_tickets GROUP BY 1",
        "service dead letters": "SELECT reason, count(*) FROM service_dead_letters GROUP BY 1",
        "dead letters": "SELECT reason, count(*) FROM dead_letters GROUP BY 1",
    }
    with psycopg.connect(url) as conn:
        return {k: conn.execute(q).fetchall() for k, q in queries.items()}  # type: ignore[arg-type]


def _dispatched(api: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{api}/tickets",
        params={"state": "dispatched"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tickets: list[dict[str, Any]] = response.json()
    return tickets


@pytest.mark.timeout(900)
@pytest.mark.skipif(os.geteuid() != 0, reason="mosquitto and the PKI ownership need root")
def test_the_compose_stack_turns_a_simulated_alert_into_a_dispatched_ticket(stack: Stack) -> None:
    for name in start_order():
        if name not in NOT_HERE:
            _start(stack, name, services()[name])
    for name in stack.procs:
        wait_until(lambda n=name: stack.healthy(n), 120, f"{name} healthy")  # type: ignore[misc]
    token = re.findall(r"^vgl_\S+$", stack.outputs["bootstrap"], re.MULTILINE)
    assert len(token) == 1, stack.outputs["bootstrap"]
    api = f"http://127.0.0.1:{stack.host.ports[8000]}"
    try:
        wait_until(lambda: _dispatched(api, token[0]), 180, "a dispatched ticket in the API")
    except TimeoutError:
        logs = "\n".join(f"--- {n}\n{stack.log(n)}" for n in stack.procs if n != "api")
        raise AssertionError(
            f"no dispatched ticket; the database holds {_census(stack.host.database_url)};"
            f" the processes said:\n{logs}"
        ) from None
    ticket = _dispatched(api, token[0])[0]
    assert ticket["device_id"].startswith("patch-")
    assert ticket["assignee"] in {"eng-ana", "eng-ben"}  # the demo ward's wound-care engineers
    with psycopg.connect(stack.host.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM readings").fetchone()
        alert = conn.execute(
            "SELECT count(*) FROM alerts WHERE device_id = %s AND rule_id = %s",
            (ticket["device_id"], ticket["rule_id"]),
        ).fetchone()
        # Active and standby: one rules replica holds the lease, the other waits, alive.
        holders = conn.execute(
            "SELECT DISTINCT a.application_name FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND a.application_name LIKE 'vigil-rules-%'"
        ).fetchall()
    assert stored and stored[0] > 0 and alert and alert[0] > 0  # stored by ingest, raised by rules
    assert len(holders) == 1 and all(stack.procs[n].poll() is None for n in ("rules", "rules-2"))
    # Each process connected under its own stable client id, as its certificate's identity.
    log = stack.broker_log.read_text()
    for client_id, identity in (
        ("vigil-ingest-1", "vigil-ingest"),
        ("vigil-ingest-2", "vigil-ingest"),
        ("vigil-rules-1", "vigil-rules"),
        ("vigil-rules-2", "vigil-rules"),
        ("vigil-service-1", "vigil-service"),
        ("vigil-gateway-ward-3-gateway", "ward-3-gateway"),
    ):
        assert re.search(rf" as {client_id} \(.*u'{identity}'\)", log), client_id
    # The gateway's scrape (what Prometheus reads at gateway:9101) has every gateway metric
    # the dashboards query.
    scrape = httpx.get(f"http://127.0.0.1:{stack.host.ports[9101]}/metrics", timeout=10).text
    listed = (ROOT / "deploy/grafana/promql-metrics.txt").read_text().split()
    wanted = {name for name in listed if name.startswith("vigil_gateway_")}
    assert wanted and {n for n in wanted if f"\n{n}" not in scrape} == set()
    # A second `up` runs the bootstrap again: it keeps the PKI, the ward and the first token.
    stack.run_once("bootstrap", services()["bootstrap"])
    again = stack.outputs["bootstrap"]
    assert "exists already, kept" in again and len(re.findall(r"^vgl_", again, re.M)) == 1
    assert _dispatched(api, token[0])


def test_the_stack_starts_after_what_it_needs() -> None:
    order = start_order()
    assert order.index("bootstrap") < order.index("broker") < order.index("gateway")
    assert order.index("timescaledb") < order.index("bootstrap")
    for consumer in ("ingest", "ingest-2", "rules", "rules-2", "service"):
        assert order.index(consumer) < order.index("gateway"), consumer
