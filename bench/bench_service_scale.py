"""The service desk at the scale of a national service network (issue 13), not a timed test.

Run as ``.venv/bin/python -m bench.bench_service_scale [--scale F] [--backends sqlite,postgres]``.
For each backend it seeds the network (500 hospitals, 100,000 devices, 300 engineers, 50,000
tickets of which 1,285 open, ~3.1 M readings; ``--scale`` shrinks it) and the same network ten
times smaller, through the store with the API's and worker's own code paths (see
``bench.scale_network``), then measures against the issue's targets:

- every list route's first page, p50/p95 sequential and with 8 concurrent clients, on both
  networks (ratio of the p95s: the routes should not grow with the network);
- KPIs of a hospital and of the network, a hospital's half-yearly report, the SLA and ward
  boards, ``/audit/verify`` and ``vigil audit verify`` (full and incremental);
- the worker: a tick, an alert arriving during a tick, intake against an empty store;
- the API process's resident memory (now and peak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.scale_api import Api, Timing, run_vigil, running_api, time_route
from bench.scale_network import (
    FULL,
    Network,
    Shape,
    bench_now,
    generate,
    seed_due_work,
    seed_installed,
    seed_readings,
    seed_tickets,
    timed,
)
from contract import AlertEvent, AlertTransition, Severity
from infra.telemetry import open_store
from infra.time_us import us_from_datetime
from service import desk
from service.alert_consumer import AlertConsumer
from service.checkpoint import generate_key, row_signature, sign_checkpoint
from service.lifecycle import Accept
from service.model import OPEN_STATES, Tier
from service.sla import SlaConfig
from service.store import ServiceStore, open_service_store
from service.store.queries import TicketQuery
from service.ticker import BREACH_CURSOR, Ticker
from service.worker_settings import WorkerSettings
from testing_services import PrivatePostgres

CLIENTS = 8
OPEN = "state=open&state=dispatched&state=accepted&state=on_site&state=waiting_for_customer"


def log(text: str) -> None:
    """Progress on stderr, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Target:
    """Where one network lives: its store URLs and how to get a fresh empty store beside it."""

    def __init__(self, backend: str, label: str, folder: Path, pg: PrivatePostgres | None):
        self.backend, self.label, self.folder = backend, label, folder
        folder.mkdir(parents=True, exist_ok=True)
        if backend == "sqlite":
            self.store_url = f"sqlite:///{folder / 'service.db'}"
            self.readings_url = f"sqlite:///{folder / 'readings.db'}"
            self.empty_url = f"sqlite:///{folder / 'empty.db'}"
        else:
            assert pg is not None
            self.store_url = self.readings_url = _database(pg, f"scale_{label}")
            self.empty_url = _database(pg, f"empty_{label}")


def _database(pg: PrivatePostgres, name: str) -> str:
    admin = pg.dsn.replace("dbname=vigil", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    dsn = pg.dsn.replace("dbname=vigil", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return dsn


def seed(target: Target, network: Network, sla: SlaConfig) -> dict[str, float]:
    """Seed ``network`` into the target's stores; the time each part took."""
    took: dict[str, float] = {}
    store = open_service_store(target.store_url, sla=sla)
    try:
        took["installed"] = timed(
            "installed base", lambda: seed_installed(store, network, log), log
        )
        alerts: list[AlertEvent] = []
        took["tickets"] = timed(
            "tickets", lambda: alerts.extend(seed_tickets(store, network, sla, log)), log
        )
        seed_due_work(store, network, sla, 20)
        store.set_cursor(BREACH_CURSOR, network.now - timedelta(minutes=1))
    finally:
        store.close()
    readings = open_store(target.readings_url)
    readings.migrate()
    took["readings"] = timed("readings", lambda: seed_readings(readings, network, alerts, log), log)
    readings.close()
    if target.backend == "postgres":
        # What an operator (or autovacuum, a little later) does after a bulk import: fresh
        # planner statistics, so plans fit tables of this size.
        with psycopg.connect(target.store_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return took


def _alert(device_id: str, n: int, network: Network) -> AlertEvent:
    return AlertEvent(
        device_id=device_id,
        rule_id=f"bench.intake.{n}",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=us_from_datetime(network.now) - 10_000_000 - n,  # just before "now", each its own
    )


async def _intake_rate(
    store: ServiceStore, settings: WorkerSettings, alerts: list[AlertEvent], now: datetime
) -> float:
    """Alerts per second turned into dispatched tickets, one after the other."""
    consumer = AlertConsumer(settings, store, clock=lambda: now)
    started = time.perf_counter()
    for alert in alerts:
        assert await consumer.handle_alert(alert) is not None
    return len(alerts) / (time.perf_counter() - started)


async def measure_worker(target: Target, network: Network, sla: SlaConfig) -> dict[str, Any]:
    """Tick time (catch-up, then steady), an alert during a tick, intake vs an empty store."""
    store = open_service_store(target.store_url, sla=sla)
    settings = WorkerSettings(sla=sla.located(store))
    ticker = Ticker(settings, store)
    consumer = AlertConsumer(settings, store, clock=lambda: network.now)
    out: dict[str, Any] = {}
    probe = [_alert(d.id, 900_000 + n, network) for n, d in enumerate(network.devices[:6])]
    for name, now in (("catch-up", network.now), ("steady", network.now + timedelta(seconds=60))):
        started = time.perf_counter()
        tick = asyncio.create_task(ticker.tick(now))
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        made = await consumer.handle_alert(probe.pop())
        latency = time.perf_counter() - sent
        await tick
        out[f"tick {name}"] = time.perf_counter() - started
        out[f"alert during {name} tick"] = latency
        assert made is not None and made.assignee is not None
    for n in range(3):
        started = time.perf_counter()
        await ticker.tick(network.now + timedelta(seconds=120 + 60 * n))
        out.setdefault("tick steady (more)", []).append(time.perf_counter() - started)
    out["open tickets"] = len(store.ticket_page(TicketQuery(states=tuple(OPEN_STATES), limit=None)))
    out |= await _intake_both(store, settings, target, network, sla)
    store.close()
    return out


async def _intake_both(
    store: ServiceStore, settings: WorkerSettings, target: Target, network: Network, sla: SlaConfig
) -> dict[str, float]:
    """Intake rate on the seeded store and on an empty one, rounds alternating (a commit's fsync
    varies a lot on a shared machine), each round 100 alerts on devices without a ticket."""
    third = len(network.devices) // 3
    devices = network.devices[third : third + min(100, third)]
    empty = open_service_store(target.empty_url, sla=sla)
    for item in [*network.sites, *network.engineers, *devices]:
        desk.put_installed(empty, item, "admin:seed", network.now)
    stores = {"seeded": (store, settings), "empty": (empty, WorkerSettings(sla=sla.located(empty)))}
    rates: dict[str, list[float]] = {"seeded": [], "empty": []}
    for n in range(4):
        for name, (where, how) in stores.items():
            batch = [
                _alert(d.id, 100_000 * n + 1_000 * len(rates[name]) + i, network)
                for i, d in enumerate(devices)
            ]
            rate = await _intake_rate(where, how, batch, network.now)
            if n:  # the first round warms both up
                rates[name].append(rate)
    empty.close()
    return {f"intake {name} /s": statistics.median(r) for name, r in rates.items()}


def routes(network: Network) -> list[tuple[str, str, str, int]]:
    """(name, token, path, sequential samples) of every route measured."""
    big, typical = network.big_site, network.typical_site
    return [
        ("GET /tickets", "admin", "/tickets", 30),
        ("GET /tickets?state=<open states>", "admin", f"/tickets?{OPEN}", 30),
        ("GET /tickets?sort=-updated", "admin", "/tickets?sort=-updated", 30),
        ("GET /tickets (big hospital)", "big", "/tickets", 30),
        ("GET /tickets (typical hospital)", "typical", "/tickets", 30),
        ("GET /devices", "admin", "/devices", 30),
        ("GET /devices (big hospital)", "big", "/devices", 30),
        ("GET /alerts", "admin", "/alerts", 30),
        ("GET /alerts (typical hospital)", "typical", "/alerts", 30),
        ("GET /kpis (typical hospital)", "typical", "/kpis", 20),
        ("GET /kpis (big hospital)", "big", "/kpis", 10),
        ("GET /kpis (network)", "admin", "/kpis", 5),
        ("GET /board/tickets (≤1,000 open)", "admin", "/board/tickets", 10),
        ("GET /board/sites/{big}?ward=W1", "big", f"/board/sites/{big}?ward=W1", 5),
        ("GET /reports/{typical}", "typical", f"/reports/{typical}", 5),
        ("GET /reports/{big}", "big", f"/reports/{big}", 3),
    ]


def measure_api(target: Target, network: Network) -> dict[str, Any]:
    """Every route's latencies and the server's memory."""
    principals = {
        "admin": {"role": "admin"},
        "big": {"role": "hospital", "subject": network.big_site},
        "typical": {"role": "hospital", "subject": network.typical_site},
    }
    out: dict[str, Any] = {}
    folder = target.folder / "api"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    with running_api(target.store_url, target.readings_url, folder, principals) as api:
        out["rss start"] = api.rss_mb()[0]
        for name, who, path, samples in routes(network):
            rounds = max(1, samples // 10)
            timing = time_route(api, who, path, samples, CLIENTS, rounds)
            out[name] = _summary(timing, api)
            log(f"{target.backend}/{target.label} {name}: {out[name]}")
        started = time.perf_counter()
        with api.client("admin") as http:
            verified = http.get("/audit/verify").json()
        out["GET /audit/verify"] = {
            "seconds": time.perf_counter() - started,
            "ok": verified["ok"],
            "rss": api.rss_mb()[0],
        }
        out["rss end"], out["rss peak"] = api.rss_mb()
    return out


def _summary(timing: Timing, api: Api) -> dict[str, float]:
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {
        "p50": ms(Timing.pct(timing.sequential, 50)),
        "p95": ms(Timing.pct(timing.sequential, 95)),
        "c_p50": ms(Timing.pct(timing.concurrent, 50)),
        "c_p95": ms(Timing.pct(timing.concurrent, 95)),
        "kb": round(timing.bytes / 1024, 1),
        "rss": round(api.rss_mb()[0], 1),
    }


def measure_audit(target: Target, network: Network, sla: SlaConfig) -> dict[str, Any]:
    """`vigil audit verify`: the whole log, then from a checkpoint with a few hundred rows after."""
    key_path = target.folder / "audit.key"
    key_path.unlink(missing_ok=True)
    key = generate_key(key_path)
    (target.folder / "audit.pub").unlink(missing_ok=True)
    store = open_service_store(target.store_url, sla=sla)
    head = store.audit_head()
    assert head is not None
    checkpoints = target.folder / "checkpoints.jsonl"
    checkpoints.write_text(sign_checkpoint(key, head, network.now).to_json() + "\n")
    store.audit_signer = lambda entry: row_signature(key, entry)
    for n, device in enumerate(network.devices[400:600]):  # ~400 signed rows after it
        at = network.now + timedelta(seconds=n)
        made = desk.open_ticket(store, device.id, Tier.GENERAL, "x", "bench", f"A{n}", at)
        if made.assignee:
            desk.apply(store, made.id, Accept(), "bench", at)
    rows = (store.audit_head() or head).seq
    store.close()
    vigil = ["audit", "verify"]
    where = ["--store-url", target.store_url]
    signed = ["--checkpoint", str(checkpoints), "--public-key", str(key_path)]
    out: dict[str, Any] = {"rows": rows}
    for name, cmd in (
        ("full", [*vigil, *where]),
        ("incremental", [*vigil, *where, *signed, "--incremental"]),
    ):
        code, took, rss, output = run_vigil(cmd)
        out[name] = {"exit": code, "seconds": round(took, 2), "peak_rss_mb": round(rss, 1)}
        said = output.strip()[-200:]
        log(f"{target.backend}/{target.label} audit verify {name}: {out[name]} {said}")
    return out


def run_backend(backend: str, shape: Shape, workdir: Path, skip: set[str]) -> dict[str, Any]:
    """Both networks on one backend: seed, then measure."""
    pg = None
    if backend == "postgres":
        pg = PrivatePostgres()
        pg.start()
    results: dict[str, Any] = {}
    try:
        for label, size in (("full", shape), ("small", shape.scaled(0.1))):
            target = Target(backend, label, workdir / backend / label, pg)
            network = generate(size, bench_now())
            sla = SlaConfig()
            log(f"{backend}/{label}: seeding {size}")
            result: dict[str, Any] = {"shape": asdict(size)}
            result["seed"] = seed(target, network, sla)
            if "worker" not in skip:
                result["worker"] = asyncio.run(measure_worker(target, network, sla))
                log(f"{backend}/{label} worker: {result['worker']}")
            if "api" not in skip:
                result["api"] = measure_api(target, network)
            if "audit" not in skip and label == "full":
                result["audit"] = measure_audit(target, network, sla)
            results[label] = result
    finally:
        if pg is not None:
            pg.cleanup()
    return results


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full network")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--skip", default="", help="comma list of: worker, api, audit")
    parser.add_argument("--out", type=Path, default=Path("var/bench_service_scale.json"))
    args = parser.parse_args()
    shape = FULL.scaled(args.scale) if args.scale != 1.0 else FULL
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-scale-"))
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    report: dict[str, Any] = {"machine": machine, "scale": args.scale}
    try:
        for backend in args.backends.split(","):
            report[backend] = run_backend(backend, shape, workdir, set(args.skip.split(",")))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1, default=str))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
