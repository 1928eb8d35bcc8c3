"""An engineer on a phone (390×844) in real chromium: accept, arrive, resolve, and the
customer's sign-off drawn with the mouse on the canvas; the audit log then shows the sign-off
with the PNG's hash. A sign-off typed by keyboard alone. axe-core finds no serious or critical
violation on the screens used."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from service import desk
from service.lifecycle import Accept, Arrive, Dispatch, Resolve
from service.model import TicketState, Tier
from tests.console.test_engineer_world import Served, axe_violations, pages_of, served
from tests.servers import starts_server
from tests.waiting import wait_until

Opener = Callable[[str, int, int], Any]  # (principal name, width, height) → logged-in page

PHONE = (390, 844)


@pytest.fixture(scope="module")
@starts_server
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(Path(tmp_path_factory.mktemp("engineer"))) as made:
        yield made


@pytest.fixture
def open_as(browser: Any, server: Served) -> Iterator[Opener]:
    yield from pages_of(browser, server)


def _assigned(server: Served, ticket_id: str, device_id: str) -> str:
    now = datetime.now(UTC)
    made = desk.open_ticket(server.store, device_id, Tier.URGENT, "no image", "h", ticket_id, now)
    if made.assignee != "e1":
        desk.apply(server.store, made.id, Dispatch("e1", "test"), "admin:desk", now)
    return made.id


def _sign(page: Any) -> None:
    """Draw a scribble across the pad with the mouse."""
    pad = page.locator("#signature-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + w * 0.1, y + h * 0.7)
    page.mouse.down()
    for fx, fy in ((0.25, 0.2), (0.4, 0.8), (0.55, 0.25), (0.7, 0.75), (0.9, 0.3)):
        page.mouse.move(x + w * fx, y + h * fy, steps=8)
    page.mouse.up()


def test_an_engineer_accepts_resolves_and_gets_a_drawn_sign_off(
    open_as: Opener, server: Served
) -> None:
    ticket_id = _assigned(server, "t-phone", "d1")
    page = open_as("e1", *PHONE)
    page.goto("/console/engineer")
    card = page.locator(".card").filter(has_text="d1")
    expect(card.locator("time.countdown")).to_contain_text("h ")  # the live countdown
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]

    card.get_by_role("link").click()
    expect(page.locator("#ticket-state")).to_have_text("dispatched")
    assert axe_violations(page) == []
    # Keyboard only: focus the Accept button and press Enter.
    page.get_by_role("button", name="Accept").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#ticket-state")).to_have_text("accepted")
    page.get_by_role("button", name="Arrived on site").click()
    expect(page.locator("#ticket-state")).to_have_text("on site")
    page.get_by_label("Fault found").fill("cracked lens")
    page.get_by_label("What was done").fill("lens replaced, image checked")
    page.get_by_label("Parts used (part numbers, separated by spaces)").fill("LENS-4")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#ticket-state")).to_have_text("resolved")
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]

    # A blank pad is refused in the page, before anything is posted.
    page.get_by_label("Name of the person signing").fill("Dr Weiss")
    page.get_by_role("button", name="Customer sign-off").click()
    expect(page.locator("#pad-empty")).to_be_visible()
    _sign(page)
    page.get_by_role("button", name="Customer sign-off").click()
    expect(page.locator("#ticket-state")).to_have_text("signed off")

    ticket = server.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.SIGNED_OFF
    assert ticket.signature is not None and ticket.signature.signer == "Dr Weiss"
    digest = ticket.signature.report_sha256
    expect(page.locator("#signature-hash")).to_have_text(digest)
    # The PNG the canvas drew is in the audit log; its hash is the e-signature.
    image = [
        e
        for e in server.store.audit_log()
        if e.action == "signature_image" and e.subject == ticket_id
    ]
    png = base64.b64decode(image[0].data["png_base64"])
    assert hashlib.sha256(png).hexdigest() == digest
    with Image.open(io.BytesIO(png)) as drawn:
        assert drawn.format == "PNG" and drawn.size == (600, 200)
        assert drawn.convert("L").getextrema()[0] < 64  # there is ink on it

    # The device file's audit events show the sign-off with that hash.
    page.get_by_role("link", name="d1").first.click()
    expect(page.locator("h1")).to_contain_text("d1")
    page.get_by_role("link", name="Show the audit events of this device and its tickets").click()
    sign_off = page.locator("#audit-table tr.audit-signoff")
    expect(sign_off).to_contain_text(ticket_id)
    expect(sign_off).to_contain_text(digest)
    expect(page.locator("#audit-table tr.audit-signature_image")).to_contain_text(digest)
    expect(page.locator("#device-plot canvas").first).to_be_attached()  # uPlot drew the plot
    assert axe_violations(page) == []


def test_an_engineer_cannot_act_on_someone_elses_ticket(open_as: Opener, server: Served) -> None:
    ticket_id = _assigned(server, "t-not-e2", "d2")
    page = open_as("e2", *PHONE)
    page.goto(f"/console/engineer/tickets/{ticket_id}")
    expect(page.locator("main")).to_contain_text("assigned to someone else")
    expect(page.get_by_role("button", name="Accept")).to_have_count(0)
    hospital = open_as("h1", *PHONE)
    answer = hospital.goto("/console/devices/d9")  # another hospital's device
    assert answer is not None and answer.status == 404


def test_a_ticket_dispatched_to_me_appears_without_a_reload(
    open_as: Opener, server: Served
) -> None:
    page = open_as("e1", *PHONE)
    page.goto("/console/engineer")
    expect(page.locator("#live-status")).to_have_attribute("data-up", "1")  # feed open
    ticket_id = _assigned(server, "t-live", "d9")
    expect(page.locator("#my-tickets")).to_contain_text("d9", timeout=5_000)
    expect(page.get_by_role("link", name="no image · d9")).to_be_visible()
    assert page.url.endswith("/console/engineer")
    assert server.store.ticket(ticket_id) is not None


def test_a_customer_signs_off_by_keyboard_alone(open_as: Opener, server: Served) -> None:
    d1 = server.store.device("d1")
    assert d1 is not None
    server.store.put_device(d1.model_copy(update={"id": "d3", "serial": "SN-d3"}))
    ticket_id = _assigned(server, "t-typed", "d3")
    now = datetime.now(UTC)
    for event in (Accept(), Arrive(), Resolve("worn seal", "replaced", ())):
        desk.apply(server.store, ticket_id, event, "engineer:e1", now)
    page = open_as("e1", *PHONE)
    page.goto(f"/console/engineer/tickets/{ticket_id}")
    expect(page.locator("#ticket-state")).to_have_text("resolved")
    # No pointer from here on: type, Tab, arrow keys, Space and Enter.
    page.get_by_label("Name of the person signing").focus()
    page.keyboard.type("Ms Keyboard")
    page.keyboard.press("Tab")  # the checked radio: "Draw on the pad"
    page.keyboard.press("ArrowDown")  # "Type the name (keyboard only)"
    expect(page.locator("#signature-pad")).to_be_hidden()
    assert axe_violations(page) == []
    page.keyboard.press("Tab")  # the statement
    expect(page.locator("#sign-consent")).to_be_focused()
    page.keyboard.press("Tab")  # the button, with the statement not ticked
    page.keyboard.press("Enter")
    expect(page.locator("#ticket-state")).to_have_text("resolved")  # the browser refused it
    page.locator("#sign-consent").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Customer sign-off")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#ticket-state")).to_have_text("signed off")
    ticket = server.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.SIGNED_OFF
    assert ticket.signature is not None and ticket.signature.signer == "Ms Keyboard"
    expect(page.locator("#signature-hash")).to_have_text(ticket.signature.report_sha256)


def test_the_engineer_pages_read_offline_and_nothing_is_sent_from_them(
    open_as: Opener, server: Served
) -> None:
    d1 = server.store.device("d1")
    assert d1 is not None
    server.store.put_device(d1.model_copy(update={"id": "d4", "serial": "SN-d4"}))
    ticket_id = _assigned(server, "t-basement", "d4")
    page = open_as("e1", *PHONE)
    page.goto("/console/engineer")
    wait_until(
        lambda: page.evaluate("navigator.serviceWorker.controller !== null"),
        15,
        "the service worker controls the page",
    )
    page.goto(f"/console/engineer/tickets/{ticket_id}")  # saved as it is shown
    expect(page.locator("#ticket-state")).to_have_text("dispatched")
    page.goto("/console/engineer")
    expect(page.locator("#offline-note")).to_be_hidden()

    page.context.set_offline(True)
    page.goto(f"/console/engineer/tickets/{ticket_id}")
    expect(page.locator("#ticket-state")).to_have_text("dispatched")
    expect(page.locator("#offline-note")).to_be_visible()
    page.get_by_role("button", name="Accept").click()
    expect(page.locator("#offline-refused")).to_be_visible()
    stored = server.store.ticket(ticket_id)
    assert stored is not None and stored.state is TicketState.DISPATCHED  # nothing was sent
    page.goto("/console/engineer")
    expect(page.locator(".card").filter(has_text="d4")).to_be_visible()
    page.goto("/console/engineer/tickets/never-opened")
    expect(page.locator("#offline-page")).to_be_visible()

    page.context.set_offline(False)
    assert axe_violations(page) == []  # (axe itself is fetched from the server)
    page.goto("/console/engineer")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/console/login")
    # Logging out leaves no copy of the engineer's pages on the phone, and no worker.
    assert page.evaluate("caches.keys()") == []
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0
