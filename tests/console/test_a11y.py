"""axe-core (vendored) in the real page: no serious or critical violations on these screens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.console import seed
from tests.console.conftest import ConsoleServer

AXE = "/console/static/vendor/axe.min.js"


def violations(page: Any) -> list[str]:
    """The serious and critical axe violations of the page as it stands, one line each."""
    page.add_script_tag(url=AXE)
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_ward_board_with_an_alert_has_no_serious_violations(
    page_as: Callable[..., Any], console_server: ConsoleServer, locale: str
) -> None:
    now = datetime.now(UTC)
    alert = seed.infection("patch-w101", now)
    seed.raise_alert(console_server.store, console_server.readings, alert, now)
    page = page_as("nurse", locale=locale)
    page.reload()
    page.wait_for_selector(".alert .plot canvas")
    assert violations(page) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_patient_page_has_no_serious_violations(page_as: Callable[..., Any], width: int) -> None:
    page = page_as("patient", width=width, height=844)
    assert violations(page) == []


def test_login_and_error_pages_have_no_serious_violations(
    browser: Any, console_server: ConsoleServer, page_as: Callable[..., Any]
) -> None:
    context = browser.new_context(base_url=console_server.base)
    login = context.new_page()
    login.goto("/console/login")
    assert violations(login) == []
    context.close()
    page = page_as("patient")
    page.goto(f"/console/patients/{seed.OTHER_PATIENT}")
    assert violations(page) == []


def test_skip_link_and_tab_order_reach_the_actions(page_as: Callable[..., Any]) -> None:
    page = page_as("patient")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Request help":
            break
    else:
        raise AssertionError("Request help is not reachable by keyboard")


@pytest.mark.parametrize("path", ["/console/knowledge", "/console/vigilance"])
def test_desk_lists_have_no_serious_violations(page_as: Callable[..., Any], path: str) -> None:
    page = page_as("admin")
    page.goto(path)
    assert violations(page) == []
