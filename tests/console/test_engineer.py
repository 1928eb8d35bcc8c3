"""The engineer's screen through TestClient: my tickets, every action, bad input and scope."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from service import desk
from service.console.engineer_signature import TYPED_STATEMENT
from service.lifecycle import Dispatch
from service.model import TicketState, Tier
from tests.console.test_engineer_world import (
    ADMIN,
    API_TOKENS,
    E1,
    E2,
    H1,
    Browser,
    World,
    data_url,
    signature_png,
    version_of,
    world,
)


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


def _open(w: World, device_id: str = "d1", tier: Tier = Tier.URGENT, new_id: str = "t1") -> str:
    """A manual ticket, dispatched to e1."""
    made = desk.open_ticket(
        w.store, device_id, tier, "pump fault", "hospital:s1", new_id, w.clock()
    )
    if made.assignee != "e1":
        desk.apply(w.store, made.id, Dispatch("e1", "test"), "admin:desk", w.clock())
    return made.id


def _act(w: World, who_client: Browser, ticket_id: str, action: str, **fields: str) -> Response:
    page = who_client.get(f"/console/engineer/tickets/{ticket_id}")
    assert page.status_code == 200, page.text
    data = {"version": version_of(page.text), **fields}
    return who_client.post(f"/console/engineer/tickets/{ticket_id}/{action}", data)


def test_my_tickets_are_sorted_by_time_left_and_show_a_countdown(w: World) -> None:
    general = _open(w, "d1", Tier.GENERAL, "t-general")
    urgent = _open(w, "d2", Tier.URGENT, "t-urgent")
    page = w.client(E1).get("/console/engineer")
    assert page.status_code == 200
    html = page.text
    assert html.index(urgent) < html.index(general)  # urgent respond clock runs out first
    assert 'class="countdown' in html and "data-deadline=" in html
    # Nobody else's tickets are on e2's list.
    other = w.client(E2).get("/console/engineer")
    assert urgent not in other.text and general not in other.text


def test_an_engineer_walks_a_ticket_to_sign_off_with_a_drawn_signature(w: World) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    for action, fields in (
        ("accept", {}),
        ("arrive", {}),
        ("pause", {"note": "ward closed for cleaning"}),
        ("resume", {}),
        ("resolve", {"fault": "worn seal", "resolution": "replaced", "parts": "SEAL-7 o-ring/2"}),
    ):
        w.clock.advance(timedelta(minutes=5))
        answer = _act(w, e1, ticket_id, action, **fields)
        assert answer.status_code == 303, (action, answer.text)
        assert answer.headers["location"].endswith(f"?done={action}")
    png = signature_png()
    w.clock.advance(timedelta(minutes=5))
    answer = _act(w, e1, ticket_id, "sign_off", signer="Dr Weiss", signature=data_url(png))
    assert answer.status_code == 303, answer.text
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.SIGNED_OFF
    digest = hashlib.sha256(png).hexdigest()
    assert ticket.signature is not None and ticket.signature.report_sha256 == digest
    assert ticket.parts == ("SEAL-7", "o-ring/2") and ticket.fault == "worn seal"
    log = w.store.audit_log()
    sign_off = [e for e in log if e.action == "signoff" and e.subject == ticket_id]
    assert sign_off and sign_off[0].data["event"]["report_sha256"] == digest
    assert sign_off[0].actor == "engineer:e1"
    image = [e for e in log if e.action == "signature_image" and e.subject == ticket_id]
    assert image and image[0].data["png_sha256"] == digest
    # The same audit actions as the REST API writes for the same events.
    actions = [e.action for e in log if e.subject == ticket_id]
    assert actions == [
        "opened",
        "dispatched",
        "accept",
        "arrive",
        "pause",
        "resume",
        "resolve",
        "parts_consumed",  # the resolve's parts leave stock (service.parts)
        "signoff",
        "signature_image",
    ]
    shown = e1.get(f"/console/engineer/tickets/{ticket_id}")
    assert digest in shown.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"signer": "", "signature": "x"}, "name of the person signing"),
        ({"signer": "A", "signature": ""}, "draw the signature"),
        ({"signer": "A", "signature": "data:image/gif;base64,R0lGOD"}, "PNG image"),
        ({"signer": "A", "signature": "data:image/png;base64,@@@"}, "not valid base64"),
        ({"signer": "A", "signature": "data:image/png;base64,iVBORw0KGgoAAAA="}, "cannot be read"),
        ({"signer": "A", "signature": "BLANK"}, "pad is empty"),
        ({"signer": "A", "signature": "HUGE"}, "at most 2000 px"),
    ],
)
def test_a_bad_signature_is_a_422_with_a_message(
    w: World, fields: dict[str, str], message: str
) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    for action, extra in (("accept", {}), ("arrive", {}), ("resolve", {"fault": "seal"})):
        assert _act(w, e1, ticket_id, action, **extra).status_code == 303
    if fields["signature"] == "BLANK":
        fields = {**fields, "signature": data_url(signature_png(ink=False))}
    if fields["signature"] == "HUGE":
        fields = {**fields, "signature": data_url(signature_png(width=2100, height=10))}
    answer = _act(w, e1, ticket_id, "sign_off", **fields)
    assert answer.status_code == 422
    assert message in answer.text
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.RESOLVED


@pytest.mark.parametrize(
    ("action", "fields", "status", "message"),
    [
        ("resolve", {"fault": "seal"}, 409, "not allowed now"),  # still dispatched
        ("explode", {}, 422, "unknown action"),
        ("pause", {"note": "x" * 2001}, 422, "longer than 2000"),
        ("pause", {"note": "bad\x00note"}, 422, "control characters"),
        ("arrive", {}, 409, "Arrive not allowed in state dispatched"),
    ],
)
def test_bad_actions_are_4xx_with_a_message(
    w: World, action: str, fields: dict[str, str], status: int, message: str
) -> None:
    ticket_id = _open(w)
    answer = _act(w, w.client(E1), ticket_id, action, **fields)
    assert answer.status_code == status, answer.text
    assert message in answer.text


def test_resolve_needs_a_fault_and_good_part_numbers(w: World) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    assert _act(w, e1, ticket_id, "accept").status_code == 303
    assert _act(w, e1, ticket_id, "arrive").status_code == 303
    no_fault = _act(w, e1, ticket_id, "resolve", fault="  ")
    assert no_fault.status_code == 422 and "name the fault" in no_fault.text
    bad_part = _act(w, e1, ticket_id, "resolve", fault="seal", parts="OK-1 <script>")
    assert bad_part.status_code == 422 and "not a part number" in bad_part.text
    assert (
        "&lt;script&gt;" in bad_part.text
        and "<script>" not in bad_part.text.split("</h1>")[1].split("<script src")[0]
    )


def test_a_stale_page_is_a_409_that_shows_the_current_state(w: World) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    page = e1.get(f"/console/engineer/tickets/{ticket_id}")
    stale = version_of(page.text)
    assert _act(w, e1, ticket_id, "accept").status_code == 303  # another tab accepted it
    answer = e1.post(f"/console/engineer/tickets/{ticket_id}/arrive", {"version": stale})
    assert answer.status_code == 409
    assert "someone else changed this ticket" in answer.text
    assert 'id="ticket-state">accepted' in answer.text
    missing = e1.post(f"/console/engineer/tickets/{ticket_id}/arrive", {})
    assert missing.status_code == 422 and "version" in missing.text


def test_an_engineer_cannot_act_on_a_ticket_not_theirs(w: World) -> None:
    ticket_id = _open(w)
    e2 = w.client(E2)
    page = e2.get(f"/console/engineer/tickets/{ticket_id}")
    assert page.status_code == 200 and "assigned to someone else" in page.text
    assert 'action="/console/engineer/tickets/' not in page.text
    answer = e2.post(f"/console/engineer/tickets/{ticket_id}/accept", {"version": "2"})
    assert answer.status_code == 403 and "not assigned to you" in answer.text
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.DISPATCHED


def test_the_engineer_screen_refuses_other_roles_and_csrf_less_posts(w: World) -> None:
    ticket_id = _open(w)
    assert w.client(H1).get("/console/engineer").status_code == 403
    e1 = w.client(E1)
    no_csrf = e1.http.post(f"/console/engineer/tickets/{ticket_id}/accept", data={"version": "2"})
    assert no_csrf.status_code == 403
    with TestClient(w.app, follow_redirects=False) as anonymous:
        assert anonymous.get("/console/engineer").status_code == 303
    missing = e1.get("/console/engineer/tickets/nope")
    assert missing.status_code == 404
    bad_id = e1.get("/console/engineer/tickets/bad%20id")
    assert bad_id.status_code == 422


def test_an_admin_sees_any_engineers_list_and_may_act(w: World) -> None:
    ticket_id = _open(w)
    admin = w.client(ADMIN)
    page = admin.get("/console/engineer?engineer=e1")
    assert page.status_code == 200 and ticket_id in page.text
    assert _act(w, admin, ticket_id, "accept").status_code == 303
    log = [e for e in w.store.audit_log() if e.action == "accept"]
    assert log[0].actor == "admin:desk"


def test_the_console_writes_the_same_audit_rows_as_the_rest_api(w: World) -> None:
    """One ticket walked through the console, one through the REST API: same actions, same
    audited fields (the sign-off's hash of what was signed included)."""
    by_console = _open(w, "d1", new_id="t-console")
    by_api = _open(w, "d2", new_id="t-api")
    png = signature_png()
    e1 = w.client(E1)
    steps: list[tuple[str, dict[str, str]]] = [
        ("accept", {}),
        ("arrive", {}),
        ("pause", {"note": "no access"}),
        ("resume", {}),
        ("resolve", {"fault": "seal", "resolution": "new seal", "parts": "SEAL-7"}),
    ]
    tokens = {p.role: t for t, p in API_TOKENS.items()}
    api = TestClient(w.app)
    for action, fields in steps:
        assert _act(w, e1, by_console, action, **fields).status_code == 303
        body = (
            {"event": action, **fields, "parts": fields["parts"].split()}
            if fields.get("parts")
            else {"event": action, **fields}
        )
        answer = api.post(
            f"/tickets/{by_api}/events",
            json=body,
            headers={"Authorization": f"Bearer {tokens['engineer']}"},
        )
        assert answer.status_code == 200, answer.text
    assert (
        _act(w, e1, by_console, "sign_off", signer="Dr W", signature=data_url(png)).status_code
        == 303
    )
    # The API takes the signed report as text; the console, the drawn PNG: both are hashed.
    api.post(
        f"/tickets/{by_api}/events",
        json={"event": "sign_off", "signer": "Dr W", "report": "signed report"},
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    ).raise_for_status()

    def shape(ticket_id: str) -> list[tuple[str, list[str]]]:
        rows = [
            (e.action, sorted(e.data.get("event", {})))
            for e in w.store.audit_log()
            if e.subject == ticket_id
        ]
        actions = [action for action, _ in rows]
        return rows[actions.index("accept") :]  # from what the engineer did on

    console_rows = shape(by_console)
    assert console_rows[-1][0] == "signature_image"  # the console also keeps the image
    assert console_rows[:-1] == shape(by_api)
    api.close()


def test_the_live_cards_fragment_lists_the_same_tickets(w: World) -> None:
    ticket_id = _open(w)
    page = w.client(E1).get("/console/engineer")
    assert 'hx-get="/console/engineer/rows"' in page.text and "sse:ticket" in page.text
    cards = w.client(E1).get("/console/engineer/rows", headers={"HX-Request": "true"})
    assert cards.status_code == 200 and ticket_id in cards.text and "<html" not in cards.text
    assert ticket_id not in w.client(E2).get("/console/engineer/rows").text
    admin = w.client(ADMIN).get("/console/engineer?engineer=e1")
    assert 'hx-get="/console/engineer/rows?engineer=e1"' in admin.text
    assert w.client(ADMIN).get("/console/engineer/rows?engineer=bad%20id").status_code == 422


def test_an_engineer_leaves_without_a_fix_and_comes_back(w: World) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    for action, fields in (
        ("accept", {}),
        ("arrive", {}),
        ("depart", {"note": "part on order"}),
        ("arrive", {}),
        ("resolve", {"fault": "pump"}),
    ):
        w.clock.advance(timedelta(minutes=10))
        assert _act(w, e1, ticket_id, action, **fields).status_code == 303, action
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.site_visits == 2
    assert any(c.note == "part on order" for c in ticket.history)


def test_a_typed_signature_signs_off_without_a_pad(w: World) -> None:
    ticket_id = _open(w)
    e1 = w.client(E1)
    for action, extra in (("accept", {}), ("arrive", {}), ("resolve", {"fault": "seal"})):
        assert _act(w, e1, ticket_id, action, **extra).status_code == 303
    unticked = _act(w, e1, ticket_id, "sign_off", signer="Dr Weiss", signature_mode="typed")
    assert unticked.status_code == 422 and "tick the statement" in unticked.text
    answer = _act(
        w, e1, ticket_id, "sign_off", signer="Dr Weiss", signature_mode="typed", consent="yes"
    )
    assert answer.status_code == 303, answer.text
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.state is TicketState.SIGNED_OFF
    assert ticket.signature is not None and ticket.signature.signer == "Dr Weiss"
    [kept] = [
        e for e in w.store.audit_log() if e.action == "signature_typed" and e.subject == ticket_id
    ]
    attestation = str(kept.data["attestation"]).encode()
    # The e-signature is the hash of the attestation the audit log keeps.
    assert hashlib.sha256(attestation).hexdigest() == ticket.signature.report_sha256
    document = json.loads(attestation)
    assert document["signer"] == "Dr Weiss" and document["ticket"] == ticket_id
    assert document["statement"] == TYPED_STATEMENT and document["language"] == "en"
    # The device file serves what was signed: the attestation, not an image.
    hospital = w.client(H1)
    assert f"/console/devices/d1/signatures/{ticket_id}" in hospital.get("/console/devices/d1").text
    served = hospital.get(f"/console/devices/d1/signatures/{ticket_id}")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.content == attestation
    assert hospital.get(f"/console/devices/d1/signatures/{ticket_id}.png").status_code == 404


def test_the_ticket_page_lists_the_parts_held_for_the_job(w: World) -> None:
    ticket_id = _open(w)
    page = w.client(E1).get(f"/console/engineer/tickets/{ticket_id}").text
    assert 'id="parts-held"' not in page  # nothing held: no section
    w.store.put_stock("north", "SEAL-7", 5, 1)
    assert w.store.reserve(ticket_id, "north", "SEAL-7", 2)
    page = w.client(E1).get(f"/console/engineer/tickets/{ticket_id}").text
    held = page.split('id="parts-held"', 1)[1].split("</section>", 1)[0]
    assert "2 × SEAL-7" in held and "warehouse north" in held
