"""The dispatcher's screens through TestClient: SLA board, load, explained manual dispatch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from service import desk
from service.console.dispatch_board import BoardFilter, board
from service.lifecycle import Accept, Pause
from service.model import TicketState, Tier
from service.sla import SlaConfig
from service.store.queries import Scope
from tests.console.test_engineer_world import ADMIN, E1, H1, World, version_of, world


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


def _open(w: World, ticket_id: str, device_id: str = "d1", tier: Tier = Tier.URGENT) -> str:
    return desk.open_ticket(
        w.store, device_id, tier, f"fault {ticket_id}", "hospital:s1", ticket_id, w.clock()
    ).id


def test_the_board_lists_open_tickets_soonest_deadline_first(w: World) -> None:
    _open(w, "t-general", tier=Tier.GENERAL)
    _open(w, "t-urgent", "d2")
    _open(w, "t-paused", "d9", Tier.GENERAL)
    paused = w.store.ticket("t-paused")
    assert paused is not None and paused.assignee
    for event in (Accept(), Pause("no access")):
        desk.apply(w.store, "t-paused", event, f"engineer:{paused.assignee}", w.clock())
    page = w.client(ADMIN).get("/console/dispatch")
    assert page.status_code == 200, page.text
    running = page.text.split('id="board-running"')[1].split("</table>")[0]
    assert running.index("t-urgent") < running.index("t-general")
    assert "t-paused" not in running and 'id="board-paused"' in page.text
    assert 'sse-connect="/console/live"' in page.text and "sse:ticket" in page.text


def test_the_board_marks_breached_and_escalated_tickets_and_filters_in_sql(w: World) -> None:
    _open(w, "t-late")
    w.clock.advance(timedelta(hours=3))  # past the 2 h urgent respond target
    escalated = desk.run_escalations(w.store, w.clock(), SlaConfig())
    assert [e.ticket.id for e in escalated] == ["t-late"]
    _open(w, "t-fresh", "d2", Tier.GENERAL)
    admin = w.client(ADMIN)
    page = admin.get("/console/dispatch?breached=true")
    assert "t-late" in page.text and "t-fresh" not in page.text
    assert "breached" in page.text and "escalated" in page.text
    rows = admin.get("/console/dispatch/rows?tier=general", headers={"HX-Request": "true"})
    assert rows.status_code == 200 and "<html" not in rows.text
    assert "t-fresh" in rows.text and "t-late" not in rows.text


def test_the_board_pages_with_a_cursor(w: World) -> None:
    for n in range(3):
        _open(w, f"t{n}", ("d1", "d2", "d9")[n], Tier.GENERAL)
        w.clock.advance(timedelta(minutes=1))
    admin = w.client(ADMIN)
    first = board(w.store, Scope(), SlaConfig(), w.clock(), BoardFilter(), None, limit=2)
    assert [r.ticket.id for r in first.rows] == ["t0", "t1"] and first.next_cursor
    rest = board(w.store, Scope(), SlaConfig(), w.clock(), BoardFilter(), first.next_cursor, 2)
    assert [r.ticket.id for r in rest.rows] == ["t2"] and rest.next_cursor is None
    # The page links to the next one with that cursor.
    paged = admin.get(f"/console/dispatch?cursor={first.next_cursor}")
    assert paged.status_code == 200
    bad = admin.get("/console/dispatch?cursor=not-a-cursor")
    assert bad.status_code == 422 and "invalid cursor" in bad.text
    bad_tier = admin.get("/console/dispatch?tier=extreme")
    assert bad_tier.status_code == 422


def test_engineer_load_is_counted_per_engineer(w: World) -> None:
    _open(w, "t1")
    _open(w, "t2", "d2")
    page = w.client(ADMIN).get("/console/load")
    assert page.status_code == 200
    assert "1 / 3" in page.text
    assert "Engineer e3" in page.text and "0 / 3" in page.text


def test_manual_dispatch_shows_the_explained_suggestion_and_applies_it(w: World) -> None:
    ticket_id = _open(w, "t1")
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.assignee == "e1"
    admin = w.client(ADMIN)
    page = admin.get(f"/console/dispatch/tickets/{ticket_id}")
    assert page.status_code == 200
    # e1 holds it now, so the suggestion is someone new, with the dispatcher's reason.
    assert "Suggested: e2" in page.text and "lowest of 2 eligible" in page.text
    assert "held it before" in page.text
    answer = admin.post(
        f"/console/dispatch/tickets/{ticket_id}",
        {"engineer_id": "e3", "reason": "e3 is in the building", "version": version_of(page.text)},
    )
    assert answer.status_code == 303, answer.text
    moved = w.store.ticket(ticket_id)
    assert moved is not None and moved.assignee == "e3" and moved.previous_assignees == ("e1",)
    entry = [e for e in w.store.audit_log() if e.action == "dispatch"][-1]
    assert entry.actor == "admin:desk" and entry.data["event"]["engineer_id"] == "e3"
    assert "e3 is in the building" in entry.data["event"]["reason"]
    done = admin.get(answer.headers["location"])
    assert "Dispatched to e3" in done.text


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"engineer_id": ""}, 422, "choose an engineer"),
        ({"engineer_id": "ghost"}, 422, "engineer ghost not found"),
        ({"engineer_id": "bad id!"}, 422, "not found"),
        ({"engineer_id": "e2", "reason": "x" * 2001}, 422, "longer than 2000"),
        ({"engineer_id": "e2", "version": ""}, 422, "version"),
        ({"engineer_id": "e2", "version": "0"}, 409, "someone else changed this ticket"),
    ],
)
def test_bad_dispatches_are_4xx_with_a_message(
    w: World, fields: dict[str, str], status: int, message: str
) -> None:
    ticket_id = _open(w, "t1")
    admin = w.client(ADMIN)
    page = admin.get(f"/console/dispatch/tickets/{ticket_id}")
    answer = admin.post(
        f"/console/dispatch/tickets/{ticket_id}", {"version": version_of(page.text), **fields}
    )
    assert answer.status_code == status, answer.text
    assert message in answer.text
    kept = w.store.ticket(ticket_id)
    assert kept is not None and kept.assignee == "e1"


def test_an_accepted_ticket_cannot_be_dispatched(w: World) -> None:
    ticket_id = _open(w, "t1")
    desk.apply(w.store, ticket_id, Accept(), "engineer:e1", w.clock())
    admin = w.client(ADMIN)
    page = admin.get(f"/console/dispatch/tickets/{ticket_id}")
    assert "can no longer be dispatched" in page.text
    answer = admin.post(
        f"/console/dispatch/tickets/{ticket_id}", {"engineer_id": "e2", "version": "3"}
    )
    assert answer.status_code == 409 and "not allowed now" in answer.text
    kept = w.store.ticket(ticket_id)
    assert kept is not None and kept.state is TicketState.ACCEPTED


def test_dispatch_screens_are_for_admins_only(w: World) -> None:
    ticket_id = _open(w, "t1")
    for who in (E1, H1):
        client = w.client(who)
        for url in ("/console/dispatch", "/console/load", f"/console/dispatch/tickets/{ticket_id}"):
            assert client.get(url).status_code == 403, (who, url)
        post = client.post(f"/console/dispatch/tickets/{ticket_id}", {"engineer_id": "e2"})
        assert post.status_code == 403
    assert w.client(ADMIN).get("/console/dispatch/tickets/nope").status_code == 404


def test_the_filter_form_as_a_browser_sends_it_empty_fields_and_all(w: World) -> None:
    _open(w, "t1")
    admin = w.client(ADMIN)
    page = admin.get("/console/dispatch?tier=&site=&assignee=")
    assert page.status_code == 200 and "t1" in page.text
    assert 'hx-get="/console/dispatch/rows?"' in page.text  # no empty filters passed on
    filtered = admin.get("/console/dispatch?tier=urgent&site=s1&assignee=e1&breached=")
    assert filtered.status_code == 200 and "t1" in filtered.text
    assert 'hx-get="/console/dispatch/rows?tier=urgent&amp;site=s1&amp;assignee=e1"' in (
        filtered.text
    )
    for bad in ("site=bad%20id", "assignee=%3Cscript%3E", "tier=extreme", "site=" + "x" * 129):
        answer = admin.get(f"/console/dispatch?{bad}")
        assert answer.status_code == 422, bad
    assert admin.get("/console/load?region=").status_code == 200


def test_a_dispatch_without_the_csrf_token_is_refused(w: World) -> None:
    ticket_id = _open(w, "t1")
    admin = w.client(ADMIN)
    refused = admin.http.post(
        f"/console/dispatch/tickets/{ticket_id}", data={"engineer_id": "e2", "version": "2"}
    )
    assert refused.status_code == 403
    kept = w.store.ticket(ticket_id)
    assert kept is not None and kept.assignee == "e1"
