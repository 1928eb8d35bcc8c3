"""A small installed base behind the API app with the console, and a browser-less client per
role (a session started directly; its CSRF token at hand). Shared by the engineer, dispatch,
device-file and admin tests; it holds no tests itself."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from contract import AlertEvent, AlertTransition, Batch, DeviceKind, Reading, Severity
from infra.telemetry import open_store
from infra.telemetry.base import ReadingStore
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import us_from_datetime
from service.api import Principal, build_app
from service.api.schemas import Role
from service.console.app import install
from service.console.session import COOKIE
from service.console.state import ConsoleState
from service.model import Device, Engineer, Patient, Site
from service.sla import SlaConfig
from service.store import SqliteStore
from tests.service.live import api_env, mint_tokens, uvicorn_api

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
ADMIN = Principal(role=Role.ADMIN, subject="desk")
E1 = Principal(role=Role.ENGINEER, subject="e1")
E2 = Principal(role=Role.ENGINEER, subject="e2")
H1 = Principal(role=Role.HOSPITAL, subject="s1")
H2 = Principal(role=Role.HOSPITAL, subject="s2")
# Bearer tokens of the REST API in the same app (to compare the console with the API).
API_TOKENS = {
    "api-token-admin-0123456789abcdefghijklmn": ADMIN,
    "api-token-e1-0123456789abcdefghijklmnopq": E1,
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="(\d+)"')


@dataclass
class Clock:
    """The app's clock, moved by the test."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move time on."""
        self.now += delta


@dataclass
class World:
    """The store, the app, its console state and the clock."""

    store: SqliteStore
    app: FastAPI
    console: ConsoleState
    clock: Clock
    clients: list[TestClient] = field(default_factory=list)

    def client(self, who: Principal) -> Browser:
        """A logged-in client for ``who``."""
        session = self.console.sessions.start(who, f"key-{who.role}-{who.subject}")
        client = TestClient(self.app, base_url="http://testserver", follow_redirects=False)
        client.cookies.set(COOKIE, session.id)
        self.clients.append(client)
        return Browser(client, session.csrf)


@dataclass
class Browser:
    """A logged-in client and its session's CSRF token."""

    http: TestClient
    csrf: str

    def get(self, url: str, **kw: Any) -> httpx.Response:
        """GET ``url``."""
        answer: httpx.Response = self.http.get(url, **kw)
        return answer

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """POST a form with the CSRF token."""
        answer: httpx.Response = self.http.post(url, data={"csrf": self.csrf, **(data or {})}, **kw)
        return answer


def seed(store: SqliteStore) -> None:
    """Two hospitals in one region, two engineers, devices in each, a home-kit patient."""
    store.put_site(Site(id="s1", hospital="North General", region="north"))
    store.put_site(Site(id="s2", hospital="North Clinic", region="north"))
    for device_id, site_id in (("d1", "s1"), ("d2", "s1"), ("d9", "s2")):
        store.put_device(
            Device(
                id=device_id,
                kind=DeviceKind.ENDOSCOPE,
                model="EX-100",
                serial=f"SN-{device_id}",
                lot="L1",
                installed_on=date(2024, 1, 1),
                site_id=site_id,
            )
        )
    for engineer_id, capacity in (("e1", 3), ("e2", 3), ("e3", 3)):
        store.put_engineer(
            Engineer(
                id=engineer_id,
                name=f"Engineer {engineer_id}",
                region="north",
                skills=frozenset({DeviceKind.ENDOSCOPE}),
                capacity=capacity,
                supervisor="boss",
            )
        )
    store.put_patient(Patient(id="p1", site_id="s1", kit=()))


def readings_of_d1(now: datetime = T0) -> SQLiteStore:
    """An in-memory reading store seeded by ``seed_readings``."""
    readings = SQLiteStore(":memory:")
    seed_readings(readings, now)
    return readings


def seed_readings(readings: ReadingStore, now: datetime) -> None:
    """The hour before ``now`` of d1's mains voltage (one a minute) and one alert."""
    readings.migrate()
    base = us_from_datetime(now - timedelta(hours=1))
    rows = [
        Reading("d1", "mains_voltage", 228.0 + (i % 5), "V", base + i * 60_000_000, i)
        for i in range(60)
    ]
    readings.store_batches([Batch("gw", 1, tuple(rows))])
    alert = AlertEvent(
        device_id="d1",
        rule_id="mains-sag",
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=base + 30 * 60_000_000,
        message="mains sag",
    )
    readings.store_alert_events([alert])


def world(with_readings: bool = False, sla: SlaConfig | None = None) -> Iterator[World]:
    """The world for one test (use as a fixture body)."""
    store = SqliteStore()
    seed(store)
    clock = Clock()
    readings = readings_of_d1() if with_readings else None
    app = build_app(store, API_TOKENS, clock=clock, readings=readings, sla=sla)
    console = app.state.console if hasattr(app.state, "console") else install(app)
    made = World(store, app, console, clock)
    try:
        yield made
    finally:
        for client in made.clients:
            client.close()
        store.close()
        if readings is not None:
            readings.close()


def signature_png(width: int = 600, height: int = 200, ink: bool = True) -> bytes:
    """A drawn signature as the pad posts it (a scribble), or a blank pad."""
    image = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    if ink:
        draw = ImageDraw.Draw(image)
        draw.line([(40, 150), (120, 40), (200, 160), (300, 50), (420, 150)], fill="black", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """``png`` as the canvas's data URL."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def version_of(html: str) -> str:
    """The ticket version a rendered ticket page carries in its forms."""
    found = VERSION.search(html)
    assert found, "no version field on the page"
    return found.group(1)


PRINCIPALS = {
    "admin": {"role": "admin", "subject": "desk"},
    "e1": {"role": "engineer", "subject": "e1"},
    "e2": {"role": "engineer", "subject": "e2"},
    "h1": {"role": "hospital", "subject": "s1"},
}


@dataclass
class Served:
    """``vigil.api_app:app`` in uvicorn over this world's SQLite files, and their other ends."""

    base: str
    tokens: dict[str, str]
    store: SqliteStore
    readings: ReadingStore


@contextmanager
def served(root: Path) -> Iterator[Served]:
    """The world in SQLite files under ``root``, served by a real uvicorn process."""
    store = SqliteStore(root / "service.db")
    seed(store)
    readings_url = f"sqlite:///{root / 'readings.db'}"
    readings = open_store(readings_url)
    seed_readings(readings, datetime.now(UTC))
    tokens = mint_tokens(root / "tokens.json", PRINCIPALS)
    env = api_env(f"sqlite:///{root / 'service.db'}", root / "tokens.json", readings_url)
    try:
        with uvicorn_api(env, tokens) as api:
            yield Served(api.base, tokens, store, readings)
    finally:
        readings.close()
        store.close()


def browser_page(browser: Any, server: Served, name: str, width: int, height: int) -> Any:
    """A new page of ``browser`` logged in as ``name`` through the login form."""
    context = browser.new_context(
        base_url=server.base, locale="en-GB", viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/console/login")
    page.fill("#token", server.tokens[name])
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/(?!login).*"))
    return page


def pages_of(browser: Any, server: Served) -> Iterator[Callable[[str, int, int], Any]]:
    """A page factory (name, width, height) whose contexts are closed afterwards, so no live
    feed keeps the server from stopping (use as a fixture body)."""
    contexts: list[Any] = []

    def open_as(name: str, width: int, height: int) -> Any:
        page = browser_page(browser, server, name, width, height)
        contexts.append(page.context)
        return page

    yield open_as
    for context in contexts:
        context.close()


SERIOUS = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on ``page`` (the vendored copy, same origin,
    so the page's strict CSP lets it load)."""
    page.add_script_tag(url="/console/static/vendor/axe.min.js")
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found
        if v["impact"] in SERIOUS
    ]
