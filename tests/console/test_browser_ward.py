"""A nurse's ward board in a real browser: live alerts, acknowledgement, hospital scoping."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect

from tests.console import seed
from tests.console.conftest import ConsoleServer


def test_nurse_sees_an_infection_alert_appear_live_and_acknowledges_it(
    page_as: Callable[..., Any], console_server: ConsoleServer
) -> None:
    page = page_as("nurse")
    expect(page.locator("h1")).to_contain_text("Ward board")
    row = page.locator(f"#row-{seed.INFECTED}")
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("OK")
    # The page is connected to the live feed before anything happens.
    # A locator wait: wait_for_function's polling evals a string, refused by the CSP.
    expect(page.locator("#live-status")).to_have_attribute("data-up", "1")
    summary = page.locator("#board-summary")
    before = int(summary.inner_text().split()[0])  # other tests' alerts on this shared server

    alert = seed.infection(seed.INFECTED, datetime.now(UTC))
    seed.raise_alert(console_server.store, console_server.readings, alert, datetime.now(UTC))

    # No reload: the live feed brings the alert within a second or two.
    expect(row.locator(".badge")).to_have_text("Critical", timeout=5_000)
    # Screen readers hear the count through the status line, swapped in out of band.
    expect(summary).to_have_text(re.compile(rf"^{before + 1} alerts? needs? attention"))
    panel = page.locator(f"#a-{alert.device_id}-{alert.rule_id}-{alert.at_us}")
    expect(panel).to_be_visible()
    expect(panel.locator(".plot canvas")).to_have_count(1)  # the evidence, drawn by uPlot
    expect(row.locator("td").nth(4)).to_have_text("+2.4")  # Δ over baseline

    # Keyboard only: type the note, Enter submits the acknowledgement.
    note = panel.locator("input[name=note]")
    note.focus()
    page.keyboard.type("dressing changed, doctor informed")
    page.keyboard.press("Enter")
    expect(row.locator(".badge")).to_have_text("Acknowledged", timeout=5_000)
    expect(summary).to_have_text(re.compile(rf"^{before} alerts? needs? attention"))
    expect(panel.locator(".ack")).to_contain_text("dressing changed, doctor informed")
    assert page.url.endswith("/console/ward")  # never reloaded


def test_a_hospital_user_cannot_see_another_hospitals_devices(
    page_as: Callable[..., Any],
) -> None:
    page = page_as("nurse")
    expect(page.locator(f"#row-{seed.INFECTED}")).to_be_visible()
    expect(page.locator(f"#row-{seed.OTHER_PATCH}")).to_have_count(0)
    answer = page.goto(f"/console/ward?site={seed.OTHER_SITE}")
    assert answer is not None and answer.status == 404
    other = page_as("other-nurse")
    expect(other.locator(f"#row-{seed.OTHER_PATCH}")).to_be_visible()
    expect(other.locator(f"#row-{seed.INFECTED}")).to_have_count(0)


def test_csrf_less_form_posts_are_refused(http_as: Callable[[str], Any]) -> None:
    client = http_as("nurse")
    form = {"device_id": seed.INFECTED, "rule_id": "wound_infection_temp", "at_us": "1"}
    assert client.post("/console/ward/ack", data=form).status_code == 403
    assert client.post("/console/logout").status_code == 403
    assert re.search("Ward board", client.get("/console/ward").text)
