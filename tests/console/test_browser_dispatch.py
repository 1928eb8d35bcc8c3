"""A dispatcher in real chromium: the SLA board gains a ticket live when an alert becomes one,
and an escalated ticket is re-dispatched with the explained suggestion; the admin screens are
axe-clean and their forms show errors next to the fields."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from contract import AlertEvent, AlertTransition, Severity
from infra.time_us import us_from_datetime
from service import desk
from service.alert_consumer import intake
from service.model import Tier
from service.sla import SlaConfig
from service.worker import WorkerSettings
from tests.console.test_engineer_world import Served, axe_violations, pages_of, served
from tests.servers import starts_server

Opener = Callable[[str, int, int], Any]  # (principal name, width, height) → logged-in page

DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
@starts_server
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(Path(tmp_path_factory.mktemp("dispatch"))) as made:
        yield made


@pytest.fixture
def open_as(browser: Any, server: Served) -> Iterator[Opener]:
    yield from pages_of(browser, server)


def test_an_alert_that_becomes_a_ticket_appears_on_the_board_live(
    open_as: Opener, server: Served
) -> None:
    page = open_as("admin", *DESKTOP)
    page.goto("/console/dispatch")
    expect(page.locator("h1")).to_have_text("SLA board")
    expect(page.locator("#live-status")).to_have_attribute("data-up", "1")  # feed open
    assert axe_violations(page) == []
    now = datetime.now(UTC)
    alert = AlertEvent(
        device_id="d2",
        rule_id="probe-failing",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=us_from_datetime(now),
        message="probe health below 20 %",
    )
    server.readings.store_alert_events([alert])
    ticket, created = intake(server.store, alert, now, WorkerSettings())
    assert created and ticket is not None
    # No reload: the live feed swaps the rows in.
    expect(page.locator(f"#ticket-{ticket.id}")).to_contain_text(
        "probe health below 20 %", timeout=5_000
    )
    assert page.url.endswith("/console/dispatch")


def test_a_dispatcher_re_dispatches_an_escalated_ticket(open_as: Opener, server: Served) -> None:
    now = datetime.now(UTC)
    opened = desk.open_ticket(
        server.store,
        "d9",
        Tier.URGENT,
        "no suction",
        "hospital:s2",
        "t-esc",
        now - timedelta(hours=3),
    )
    first = opened.assignee
    escalated = desk.run_escalations(server.store, now - timedelta(minutes=30), SlaConfig())
    assert [e.ticket.id for e in escalated] == ["t-esc"]
    second = escalated[0].ticket.assignee
    assert second and second != first

    page = open_as("admin", *DESKTOP)
    page.goto("/console/dispatch")
    row = page.locator("#ticket-t-esc")
    expect(row).to_contain_text("escalated")
    expect(row).to_contain_text("breached")
    row.get_by_role("link", name="Dispatch t-esc").click()
    expect(page.locator("#suggestion")).to_contain_text("lowest of")
    assert axe_violations(page) == []
    suggested = page.locator("input[name=engineer_id]:checked")
    chosen = suggested.get_attribute("value")
    assert chosen not in (first, second)  # both let it lapse or hold it: someone new
    page.get_by_label("Reason (kept in the audit log)").fill("supervisor asked for a senior")
    page.get_by_role("button", name="Dispatch", exact=True).click()
    expect(page.locator("#dispatch-done")).to_have_text(f"Dispatched to {chosen}.")
    expect(page.locator("#ticket-assignee")).to_have_text(chosen or "")
    moved = server.store.ticket("t-esc")
    assert moved is not None and moved.assignee == chosen
    assert moved.previous_assignees == (first, second)
    entry = [e for e in server.store.audit_log() if e.subject == "t-esc"][-1]
    assert entry.action == "dispatch" and entry.actor == "admin:desk"
    assert "supervisor asked for a senior" in entry.data["event"]["reason"]


def test_admin_screens_are_axe_clean_and_forms_show_errors(open_as: Opener, server: Served) -> None:
    page = open_as("admin", *DESKTOP)
    for url in (
        "/console/load",
        "/console/admin/base",
        "/console/admin/kpis",
        "/console/admin/audit",
    ):
        page.goto(url)
        assert axe_violations(page) == [], url
    page.get_by_role("link", name="Verify the whole chain now").click()
    expect(page.locator("#audit-ok")).to_be_visible()
    page.goto("/console/admin/devices/new")
    page.locator("#f-id").fill("d-new")
    page.locator("#f-kind").select_option("endoscope")
    page.locator("#f-model").fill("EX-200")
    page.locator("#f-serial").fill("SN-new")
    page.locator("#f-installed_on").fill("2026-01-10")
    page.locator("#f-site_id").fill("s404")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#e-site_id")).to_have_text("no such site")
    assert axe_violations(page) == []
    page.locator("#f-site_id").fill("s1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("main")).to_contain_text("Saved.")
    assert server.store.device("d-new") is not None
    phone = open_as("admin", 390, 844)
    phone.goto("/console/dispatch")
    assert axe_violations(phone) == []
