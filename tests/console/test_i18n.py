"""English and Simplified Chinese: negotiation, the switch, catalogs, dates in the site's zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from infra.telemetry import open_store
from service.api.app import build_app
from service.api.schemas import Principal, Role
from service.business_hours import BusinessCalendar
from service.console import i18n
from service.sla import SlaConfig
from service.store import SqliteStore
from tests.console import seed
from tests.console.conftest import login, token_of

CONSOLE = Path(i18n.__file__).parent
MINE = ("base", "login", "error", "ward", "_ward_rows", "patient")


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh_Hans"),
        ("en-GB,en;q=0.9,zh;q=0.8", "en"),
        ("fr-FR,zh-Hans;q=0.5", "zh_Hans"),
        ("fr, de", "en"),
        ("en;q=0.2, zh;q=0.9", "zh_Hans"),
        ("zh;q=0, en;q=0.1", "en"),
        ("zh;q=abc", "en"),
        ("x" * 10_000, "en"),
    ],
)
def test_language_from_accept_language(header: str | None, language: str) -> None:
    assert i18n.negotiate(header) == language


def test_the_switch_wins_over_the_header_only_for_known_languages() -> None:
    assert i18n.chosen("en", "zh-CN") == "en"
    assert i18n.chosen("zh_Hans", "en") == "zh_Hans"
    assert i18n.chosen("klingon", "zh-CN") == "zh_Hans"


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = SqliteStore(":memory:")
    readings = open_store("sqlite:///:memory:")
    seed.seed(store, readings, seed.when())
    shanghai = BusinessCalendar(timezone="Asia/Shanghai")
    sla = SlaConfig(site_calendars={seed.SITE: shanghai})
    principal = Principal(role=Role.HOSPITAL, subject=seed.SITE)
    app = build_app(store, {token_of("nurse"): principal}, readings=readings, sla=sla)
    yield TestClient(app)
    readings.close()
    store.close()


def test_chinese_from_the_browser_and_the_switch_back(client: TestClient) -> None:
    client.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
    assert "登录 vigil 控制台" in client.get("/console/login").text
    login(client, token_of("nurse"))
    page = client.get("/console/ward").text
    assert '<html lang="zh-Hans">' in page
    assert "病区看板" in page and "Ward board" not in page
    assert "Asia/Shanghai" in page  # the site's zone, not the server's
    switched = client.get("/console/lang/en?back=/console/ward", follow_redirects=False)
    assert switched.headers["location"] == "/console/ward"
    assert "Ward board" in client.get("/console/ward").text


@pytest.mark.parametrize("back", ["//evil.example/", "https://evil.example/", "/api", "/\\evil"])
def test_the_switch_never_redirects_out_of_the_console(client: TestClient, back: str) -> None:
    answer = client.get("/console/lang/zh_Hans", params={"back": back}, follow_redirects=False)
    assert answer.headers["location"] == "/console/"


def test_unknown_language_is_404(client: TestClient) -> None:
    assert client.get("/console/lang/xx", follow_redirects=False).status_code == 404


def test_dates_in_the_sites_zone_and_the_readers_language() -> None:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    shanghai = ZoneInfo("Asia/Shanghai")
    i18n.use("en")
    assert "5:00" in i18n.when(at, shanghai, "short")
    i18n.use("zh_Hans")
    assert "17:00" in i18n.when(at, shanghai, "short")
    assert i18n.when(None, shanghai) == ""
    i18n.use("en")


def test_every_message_of_these_screens_is_translated() -> None:
    po = CONSOLE / "locale" / "zh_Hans" / "LC_MESSAGES" / "console.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale="zh_Hans")
    methods = [(f"templates/{name}.html", "jinja2.ext:babel_extract") for name in MINE]
    methods += [(f"{name}.py", "python") for name in ("login", "ward", "patient", "board")]
    keywords = {"_": None, "N_": None, "ngettext": (1, 2)}
    options = {m: {"extensions": "jinja2.ext.i18n"} for m, _ in methods if m.endswith(".html")}
    untranslated = []
    for _, _, message, _, _ in extract_from_dir(CONSOLE, methods, options, keywords):
        key = message[0] if isinstance(message, tuple) else message
        found = catalog.get(key)
        string = found.string if found is not None else None
        if not string or (isinstance(string, tuple) and not all(string)):
            untranslated.append(key)
    assert untranslated == []
