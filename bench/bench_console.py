"""The web console at ward scale (issue 14): server render times and the live feed's fan-out.

Run as ``.venv/bin/python -m bench.bench_console [--patches 10000] [--tickets 1000]
[--clients 200]``. Seeds SQLite files (one hospital, ``--patches`` dressing patches in wards
of 500 with their latest readings, an active alert on every tenth, ``--tickets`` open
tickets), then:

- renders the ward board (first page, and one ward), the SLA board and a trivial route
  (``/health``) in process, each many times, and prints the p50/p95 and the p95's ratio to the
  trivial route's, measured in the same run;
- starts ``vigil.api_app:app`` in uvicorn, opens ``--clients`` SSE streams of logged-in
  browsers, commits one alert the way the pipeline does (rules' event in the reading store,
  the worker's ticket in the service store) and measures how long each stream takes to hear
  of it (goal: all within 1 s of the commit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from contract import Batch, DeviceKind, Reading
from infra.telemetry import open_store
from infra.telemetry.base import ReadingStore
from infra.time_us import us_from_datetime
from service.api.app import build_app
from service.api.schemas import Principal, Role
from service.model import Device, Location, Site, TicketKind, Tier, new_ticket
from service.store import ServiceStore, SqliteStore
from tests.console.conftest import login
from tests.console.seed import infection, raise_alert
from tests.servers import free_port
from tests.service.live import ROOT, LiveApi, answers, api_env, mint_tokens
from tests.waiting import wait_until

SITE = "bench-site"
WARD_SIZE = 500
NURSE = "n" * 40
ADMIN = "a" * 40


@contextlib.contextmanager
def served(env: Mapping[str, str], tokens: Mapping[str, str]) -> Iterator[LiveApi]:
    """``vigil.api_app:app`` in uvicorn (as the tests start it, with a patient deadline: the
    bench machine is shared and busy)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "vigil.api_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            return answers(f"{base}/health")

        wait_until(up, 120, "uvicorn to answer /health")
        yield LiveApi(base, proc.pid, dict(tokens))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def seed(store: ServiceStore, readings: ReadingStore, patches: int, tickets: int) -> None:
    """The hospital, its patches with their latest readings and some alerts, open tickets."""
    now = datetime.now(UTC)
    store.put_site(Site(id=SITE, hospital="Bench General", region="north"))
    ids = [f"patch-{i:05d}" for i in range(patches)]
    with store.atomic():
        for i, device_id in enumerate(ids):
            ward = f"W{i // WARD_SIZE:02d}"
            store.put_device(
                Device(
                    id=device_id,
                    kind=DeviceKind.PATCH,
                    model="WP-2",
                    serial=f"SN-{device_id}",
                    installed_on=date(2026, 1, 1),
                    site_id=SITE,
                    location=Location(ward=ward, room=str(i % WARD_SIZE)),
                )
            )
    readings.migrate()
    ts = us_from_datetime(now - timedelta(minutes=5))
    rows = []
    for seq, device_id in enumerate(ids, 1):
        rows += [
            Reading(device_id, "wound_ph", 7.2, "pH", ts, seq),
            Reading(device_id, "wound_temp", 33.4, "degC", ts, seq),
            Reading(device_id, "exudate", 30.0, "%", ts, seq),
            Reading(device_id, "battery", 70.0, "%", ts, seq),
        ]
    readings.store_batches([Batch("gw-bench", 1, tuple(rows))])
    readings.store_alert_events(
        [infection(device_id, now - timedelta(hours=1)) for device_id in ids[::10]]
    )
    opened = now - timedelta(hours=2)
    with store.atomic():
        for i in range(tickets):
            ticket = new_ticket(
                f"t-{i:05d}",
                ids[(i * 7) % patches],
                Tier.URGENT if i % 3 == 0 else Tier.GENERAL,
                opened + timedelta(seconds=i),
                kind=TicketKind.MANUAL,
                title="bench",
            )
            store.put_ticket(ticket)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
    )


def timed(get: Callable[[], httpx.Response], rounds: int) -> list[float]:
    """Seconds per call of ``get`` (each must answer 200)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = get()
        samples.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text[:300]
    return samples


def render_bench(root: Path, rounds: int) -> None:
    """Server render p50/p95 of the boards against a trivial route, in process."""
    store = SqliteStore(root / "service.db")
    readings = open_store(f"sqlite:///{root / 'readings.db'}")
    tokens = {
        NURSE: Principal(role=Role.HOSPITAL, subject=SITE),
        ADMIN: Principal(role=Role.ADMIN),
    }
    guards_app = build_app(store, tokens, readings=readings)
    nurse, admin = TestClient(guards_app), TestClient(guards_app)
    login(nurse, NURSE)
    login(admin, ADMIN)
    routes: dict[str, Callable[[], httpx.Response]] = {
        "trivial: GET /health": lambda: nurse.get("/health"),
        "ward board, first page (100 patches)": lambda: nurse.get("/console/ward"),
        "ward board, one ward": lambda: nurse.get("/console/ward?ward=W01"),
        "ward board rows (live refresh)": lambda: nurse.get("/console/ward/rows"),
        "SLA board (admin)": lambda: admin.get("/console/dispatch"),
    }
    results = {}
    for name, get in routes.items():
        timed(get, 3)  # warm caches and compiled templates
        results[name] = percentiles(timed(get, rounds))
    base = results["trivial: GET /health"][1]
    print("\n| route | p50 | p95 | p95 / trivial |\n|---|---|---|---|")
    for name, (p50, p95) in results.items():
        print(f"| {name} | {p50:.1f} ms | {p95:.1f} ms | {p95 / base:.1f}× |")
    readings.close()
    store.close()


async def _listen(
    base: str, cookies: httpx.Cookies, ready: asyncio.Event, heard: list[float], total: int
) -> None:
    async with (
        httpx.AsyncClient(base_url=base, cookies=cookies, timeout=30) as client,
        client.stream("GET", "/console/live") as stream,
    ):
        first = True
        async for line in stream.aiter_lines():
            if first:
                first = False
                heard.append(-1.0)  # connected marker
                if sum(1 for h in heard if h < 0) == total:
                    ready.set()
            if line.startswith("event: alert"):
                heard.append(time.perf_counter())
                return


async def fanout_bench(root: Path, clients: int) -> None:
    """Time from one alert's commit until each of ``clients`` SSE streams hears of it."""
    tokens = mint_tokens(root / "tokens.json", {"nurse": {"role": "hospital", "subject": SITE}})
    env = api_env(
        f"sqlite:///{root / 'service.db'}",
        root / "tokens.json",
        f"sqlite:///{root / 'readings.db'}",
    )
    env["VIGIL_SERVICE__API_RATE_LIMIT"] = "100000/minute"
    store = SqliteStore(root / "service.db")
    readings = open_store(f"sqlite:///{root / 'readings.db'}")
    with served(env, tokens) as api:
        with httpx.Client(base_url=api.base) as browser:
            assert login(browser, tokens["nurse"]).status_code == 303
            cookies = browser.cookies
        ready = asyncio.Event()
        heard: list[float] = []
        tasks = [
            asyncio.create_task(_listen(api.base, cookies, ready, heard, clients))
            for _ in range(clients)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(1.0)  # the watcher has taken its first look
        now = datetime.now(UTC)
        committed = time.perf_counter()
        await asyncio.to_thread(raise_alert, store, readings, infection("patch-00003", now), now)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    delays = sorted(h - committed for h in heard if h >= 0)
    within = sum(1 for d in delays if d <= 1.0)
    p50, p95 = percentiles(delays)
    print(
        f"\nSSE fan-out to {clients} streams: {len(delays)} heard the alert; "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {delays[-1] * 1000:.0f} ms after the commit; "
        f"{within}/{clients} within 1 s"
    )
    readings.close()
    store.close()


def main() -> None:
    """Seed, then measure renders and the fan-out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"{args.patches} patches, {args.tickets} open tickets"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SqliteStore(root / "service.db")
        readings = open_store(f"sqlite:///{root / 'readings.db'}")
        started = time.perf_counter()
        seed(store, readings, args.patches, args.tickets)
        print(f"seeded in {time.perf_counter() - started:.1f} s")
        readings.close()
        store.close()
        render_bench(root, args.rounds)
        asyncio.run(fanout_bench(root, args.clients))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
