"""Remote diagnosis on the engineer's ticket page: the assigned engineer sends a catalogue
command to the ticket's device (the REST API's own path), sees it queued on the ticket, and
every refusal is a 4xx page with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.presence import PresenceKind, online
from infra.time_us import us_from_datetime
from service import desk
from service.commands_model import CommandState
from service.lifecycle import Dispatch
from service.model import Tier
from service.presence_model import PresenceRecord
from tests.console.test_engineer_world import E1, E2, World, world


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


def _ticket(w: World) -> str:
    made = desk.open_ticket(w.store, "d1", Tier.URGENT, "no image", "hospital:s1", "t1", w.clock())
    if made.assignee != "e1":
        desk.apply(w.store, made.id, Dispatch("e1", "test"), "admin:desk", w.clock())
    return made.id


def _online(w: World, device_id: str = "d1") -> None:
    at = us_from_datetime(w.clock())
    status = online(PresenceKind.EQUIPMENT, device_id, at, at)
    w.store.put_presence(
        PresenceRecord(
            subject_id=device_id,
            kind=PresenceKind.EQUIPMENT,
            gateway_id="gw-1",
            state=status.state,
            reason=status.reason,
            changed_at_us=at,
            online_since_us=at,
            last_online_us=at,
            status=status,
        )
    )


def test_the_assigned_engineer_sends_a_command_and_sees_it_on_the_ticket(w: World) -> None:
    ticket_id, e1 = _ticket(w), w.client(E1)
    _online(w)
    page = e1.get(f"/console/engineer/tickets/{ticket_id}")
    assert page.status_code == 200 and "Remote diagnosis" in page.text
    assert 'value="self_test"' in page.text
    assert 'value="probe_impedance_test"' not in page.text  # ultrasound only; d1 is an endoscope
    sent = e1.post(f"/console/engineer/commands/{ticket_id}", {"command": "self_test"})
    assert sent.status_code == 303, sent.text
    [record] = w.store.ticket_commands(ticket_id)
    assert (record.command, record.state, record.gateway_id) == (
        "self_test",
        CommandState.QUEUED,
        "gw-1",
    )
    assert record.requested_by == "engineer:e1"
    shown = e1.get(sent.headers["location"])
    assert "Command sent" in shown.text and 'id="ticket-commands"' in shown.text


def test_refusals_are_4xx_pages_with_the_reason(w: World) -> None:
    ticket_id, e1 = _ticket(w), w.client(E1)
    nowhere = e1.post(f"/console/engineer/commands/{ticket_id}", {"command": "self_test"})
    assert nowhere.status_code == 409 and "nowhere to send it" in nowhere.text
    _online(w)
    unknown = e1.post(f"/console/engineer/commands/{ticket_id}", {"command": "format_disk"})
    assert unknown.status_code == 422 and "unknown command" in unknown.text
    wrong_kind = e1.post(
        f"/console/engineer/commands/{ticket_id}", {"command": "probe_impedance_test"}
    )
    assert wrong_kind.status_code == 422 and "not for a endoscope" in wrong_kind.text
    empty = e1.post(f"/console/engineer/commands/{ticket_id}", {})
    assert empty.status_code == 422
    oversized = e1.post(f"/console/engineer/commands/{ticket_id}", {"command": "x" * 10_000})
    assert oversized.status_code == 422
    nul = e1.post(f"/console/engineer/commands/{ticket_id}", {"command": "self_test\x00"})
    assert nul.status_code in (400, 422)
    missing = e1.post("/console/engineer/commands/nope", {"command": "self_test"})
    assert missing.status_code == 404
    other = w.client(E2).post(f"/console/engineer/commands/{ticket_id}", {"command": "self_test"})
    assert other.status_code == 403
    assert w.store.ticket_commands(ticket_id) == []
    no_csrf = e1.http.post(f"/console/engineer/commands/{ticket_id}", data={"command": "reboot"})
    assert no_csrf.status_code == 403 and w.store.ticket_commands(ticket_id) == []
