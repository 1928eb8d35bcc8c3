"""A patient at home, in a real browser: their status, help, and nobody else's page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect

from service.patient_messages import patient_messages
from tests.console import seed
from tests.console.conftest import ConsoleServer


def test_patient_sees_their_status_and_asks_for_help_by_keyboard(
    page_as: Callable[..., Any],
) -> None:
    page = page_as("patient", width=390, height=844)
    expect(page.locator("h1")).to_have_text("My dressing")
    expect(page.locator(f"#kit-{seed.HOME_PATCH}")).to_be_visible()
    expect(page.locator(".statuses li").first).to_be_visible()
    button = page.get_by_role("button", name="Request help")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("request for help was sent")
    expect(page.locator(".updates")).to_contain_text("help requested from the patient console")


def test_patient_gets_404_on_another_patients_page(page_as: Callable[..., Any]) -> None:
    page = page_as("patient")
    answer = page.goto(f"/console/patients/{seed.OTHER_PATIENT}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).not_to_contain_text(seed.OTHER_PATCH)
    ward = page.goto("/console/ward")
    assert ward is not None and ward.status == 403


def test_patient_page_updates_live_when_their_dressing_raises_an_alert(
    page_as: Callable[..., Any], console_server: ConsoleServer
) -> None:
    page = page_as("patient")
    # Locator waits, not wait_for_function: its polling evals a string, which the
    # console's CSP (script-src 'self') refuses once the first check is false.
    expect(page.locator("#live-kit")).to_be_attached()
    expect(page.locator(".tone-urgent")).to_have_count(0)
    expect(page.locator("body")).to_have_attribute("data-live", "1")  # the stream is open
    now = datetime.now(UTC)
    alert = seed.infection(seed.HOME_PATCH, now)
    seed.raise_alert(console_server.store, console_server.readings, alert, now)
    expect(page.locator(".tone-urgent")).to_contain_text("nurse", timeout=5_000)


def test_patient_writes_what_is_wrong_with_the_help_request(
    page_as: Callable[..., Any], console_server: ConsoleServer
) -> None:
    page = page_as("patient", width=390, height=844)
    words = "The dressing is leaking at the bottom edge"
    box = page.get_by_label("What would you like your care team to know? (optional)")
    box.fill(words)
    page.get_by_role("button", name="Request help").click()
    expect(page.get_by_role("status")).to_contain_text("request for help was sent")
    tickets = console_server.store.tickets(device_ids=[seed.HOME_PATCH])
    said = [e.message for t in tickets for e in patient_messages(t)]
    assert words in said
