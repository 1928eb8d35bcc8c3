"""Console fixtures: the API+console in-process or in a real uvicorn, and logged-in browsers.

- ``console_app`` / ``login_client``: the app over in-memory SQLite stores, driven by
  Starlette's TestClient (fast; no server).
- ``console_server``: ``vigil.api_app:app`` in its own uvicorn process on a free loopback port,
  over SQLite files seeded by ``tests.console.seed`` (one per session); the test process keeps
  the same stores open to change the world under it (``raise_alert``).
- ``browser`` / ``page_as``: Debian's chromium driven by Playwright (never a downloaded browser),
  and a page logged in as one of ``seed.PRINCIPALS`` by name ("nurse", "patient", ...).
- ``http_as``: an httpx client logged in the same way, for requests without a browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.telemetry import open_store
from infra.telemetry.base import ReadingStore
from service.api.app import build_app
from service.api.schemas import Principal, Role
from service.store import ServiceStore, SqliteStore
from tests.console import seed
from tests.servers import starts_server
from tests.service.live import api_env, mint_tokens, uvicorn_api

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def token_of(name: str) -> str:
    """The in-process token of a principal (each at least 32 characters)."""
    return f"test-token-{name}-".ljust(40, "x")


@pytest.fixture
def world() -> Iterator[tuple[ServiceStore, ReadingStore]]:
    """Seeded in-memory stores."""
    store = SqliteStore(":memory:")
    readings = open_store("sqlite:///:memory:")
    seed.seed(store, readings, seed.when())
    yield store, readings
    readings.close()
    store.close()


@pytest.fixture
def console_app(world: tuple[ServiceStore, ReadingStore]) -> FastAPI:
    """The API with the console over the seeded stores, knowing one token per principal."""
    store, readings = world
    tokens = {
        token_of(name): Principal(role=Role(p["role"]), subject=p["subject"])
        for name, p in seed.PRINCIPALS.items()
    }
    return build_app(store, tokens, readings=readings)


def login(client: httpx.Client | TestClient, token: str) -> httpx.Response:
    """Log ``client`` in through the login form (its double-submit CSRF cookie included)."""
    form = client.get("/console/login")
    match = CSRF_FIELD.search(form.text)
    assert match, form.text
    return client.post(
        "/console/login", data={"token": token, "csrf": match.group(1)}, follow_redirects=False
    )


def csrf_of(client: httpx.Client | TestClient, path: str) -> str:
    """The session's CSRF token, read from a page as a browser would."""
    match = CSRF_FIELD.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


@pytest.fixture
def login_client(console_app: FastAPI) -> Callable[[str], TestClient]:
    """A TestClient logged in as the named principal."""
    made: list[TestClient] = []

    def as_(name: str) -> TestClient:
        client = TestClient(console_app, base_url="http://testserver")
        made.append(client)
        assert login(client, token_of(name)).status_code == 303
        return client

    return as_


@dataclass
class ConsoleServer:
    """The uvicorn-served console, its tokens by principal name, and its stores' other ends."""

    base: str
    tokens: dict[str, str]
    store: ServiceStore
    readings: ReadingStore


@pytest.fixture(scope="session")
@starts_server
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """``vigil.api_app:app`` in uvicorn over seeded SQLite files (sites in their time zones)."""
    root = tmp_path_factory.mktemp("console")
    store_url = f"sqlite:///{root / 'service.db'}"
    readings_url = f"sqlite:///{root / 'readings.db'}"
    store = SqliteStore(root / "service.db")
    readings = open_store(readings_url)
    seed.seed(store, readings, seed.when())
    tokens = mint_tokens(root / "tokens.json", seed.PRINCIPALS)
    config = root / "vigil.toml"
    config.write_text(seed.SITE_TOML)
    env = {**api_env(store_url, root / "tokens.json", readings_url), "VIGIL_CONFIG": str(config)}
    with uvicorn_api(env, tokens) as api:
        yield ConsoleServer(api.base, tokens, store, readings)
    readings.close()
    store.close()


@pytest.fixture
def http_as(console_server: ConsoleServer) -> Iterator[Callable[[str], httpx.Client]]:
    """An httpx client of the served console, logged in as the named principal."""
    made: list[httpx.Client] = []

    def as_(name: str) -> httpx.Client:
        client = httpx.Client(base_url=console_server.base, timeout=30)
        made.append(client)
        assert login(client, console_server.tokens[name]).status_code == 303
        return client

    yield as_
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium under Playwright (skipped where it is not installed).

    One per test module: Playwright's sync API keeps an event loop running in this thread
    while it is open, which the asyncio tests of later modules could not start beside.
    """
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make services installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page_as(browser: Any, console_server: ConsoleServer) -> Iterator[Callable[..., Any]]:
    """A new browser page logged in as the named principal (``locale`` for Accept-Language)."""
    contexts: list[Any] = []

    def as_(name: str, locale: str = "en-GB", width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(
            base_url=console_server.base,
            locale=locale,
            viewport={"width": width, "height": height},
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/console/login")
        page.fill("#token", console_server.tokens[name])
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r".*/console/(?!login).*"))
        return page

    yield as_
    for context in contexts:
        context.close()
