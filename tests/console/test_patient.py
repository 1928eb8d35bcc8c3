"""The patient's page in process: plain-language status, scoping, request help, its budget,
and the patient's message with it (kept on the ticket, shown to staff, bounded, validated)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from contract import Severity
from infra.telemetry.base import ReadingStore
from service.console.patient import statuses
from service.model import OPEN_STATES, Ticket, TicketKind
from service.patient_messages import MAX_MESSAGES, patient_messages
from service.store import ServiceStore
from tests.console import seed
from tests.console.conftest import csrf_of

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_patient_sees_their_dressing_in_plain_words(
    login_client: Callable[[str], TestClient],
) -> None:
    client = login_client("patient")
    answer = client.get("/console/me")
    assert answer.status_code == 200
    assert f"/console/patients/{seed.PATIENT}" in str(answer.url)
    assert seed.HOME_PATCH in answer.text
    assert "working normally" in answer.text or "battery is low" in answer.text
    assert "Request help" in answer.text
    assert 'name="message"' in answer.text and "care team to know" in answer.text


def test_another_patients_page_is_a_404_like_a_missing_one(
    login_client: Callable[[str], TestClient],
) -> None:
    client = login_client("patient")
    other = client.get(f"/console/patients/{seed.OTHER_PATIENT}")
    missing = client.get("/console/patients/nobody")
    assert other.status_code == missing.status_code == 404
    assert seed.OTHER_PATCH not in other.text
    help_ = client.post(
        f"/console/patients/{seed.OTHER_PATIENT}/help",
        data={"device_id": seed.OTHER_PATCH, "csrf": csrf_of(client, "/console/me")},
    )
    assert help_.status_code == 404


def test_a_hospital_sees_its_own_patients_only(
    login_client: Callable[[str], TestClient],
) -> None:
    nurse = login_client("nurse")
    assert nurse.get(f"/console/patients/{seed.PATIENT}").status_code == 200
    assert nurse.get(f"/console/patients/{seed.OTHER_PATIENT}").status_code == 404


def test_request_help_opens_one_ticket_and_repeats_reuse_it(
    login_client: Callable[[str], TestClient], console_app: object
) -> None:
    client = login_client("patient")
    csrf = csrf_of(client, "/console/me")
    path = f"/console/patients/{seed.PATIENT}/help"
    first = client.post(path, data={"device_id": seed.HOME_PATCH, "csrf": csrf})
    assert first.status_code == 200 and "was sent" in first.text
    again = client.post(path, data={"device_id": seed.HOME_PATCH, "csrf": csrf})
    assert again.status_code == 200
    page = client.get("/console/me").text
    assert page.count("help requested from the patient console") == 1
    # Another patient's dressing cannot be asked about through one's own page.
    wrong = client.post(path, data={"device_id": seed.OTHER_PATCH, "csrf": csrf})
    assert wrong.status_code == 404
    assert client.post(path, data={"device_id": seed.HOME_PATCH}).status_code == 403


def test_statuses_say_what_matters_most_first() -> None:
    seen = NOW - timedelta(minutes=5)
    assert statuses({}, [], seen, NOW)[0].tone == "ok"
    urgent = statuses({"battery": 10.0}, [Severity.CRITICAL], seen, NOW)
    assert urgent[0].tone == "urgent" and "battery" in urgent[1].message
    loose = statuses({"status_flags": 1.0}, [], seen, NOW)
    assert "come loose" in loose[0].message
    silent = statuses({}, [], NOW - timedelta(hours=3), NOW)
    assert "for a while" in silent[0].message
    assert "yet" in statuses({}, [], None, NOW)[0].message


def _help_ticket(store: ServiceStore) -> Ticket:
    (ticket,) = [
        t for t in store.tickets(OPEN_STATES, [seed.HOME_PATCH]) if t.kind is TicketKind.MANUAL
    ]
    return ticket


def _help_form(login_client: Callable[[str], TestClient]) -> tuple[TestClient, str, dict[str, str]]:
    """The patient logged in, their help path, and the form's fixed fields."""
    client = login_client("patient")
    form = {"device_id": seed.HOME_PATCH, "csrf": csrf_of(client, "/console/me")}
    return client, f"/console/patients/{seed.PATIENT}/help", form


def test_a_patient_message_travels_with_the_help_request_to_the_staff(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    client, path, form = _help_form(login_client)
    words = "It leaks at the edge\nand hurts more since this morning <b>"
    sent = client.post(path, data={**form, "message": words})
    assert sent.status_code == 200 and "was sent" in sent.text
    again = client.post(path, data={**form, "message": "  now it is wet  "})
    assert again.status_code == 200
    ticket = _help_ticket(store)  # one ticket, both messages on it, in order
    assert [e.message for e in patient_messages(ticket)] == [words, "now it is wet"]
    assert "patient_message" in [e.action for e in store.audit_log() if e.subject == ticket.id]
    assert all(words not in str(e.data) for e in store.audit_log())  # text stays on the ticket
    # Told to who handles it (with the words), never echoed to the patient.
    told = [n for n in store.notifications() if n.event == "ticket.patient_message"]
    assert (
        told and {n.role for n in told} >= {"hospital"} and "patient" not in {n.role for n in told}
    )
    assert {n.payload["patient_message"] for n in told} == {words, "now it is wet"}
    # The staff's ticket page shows them, escaped.
    page = login_client("admin").get(f"/console/engineer/tickets/{ticket.id}").text
    assert "The patient wrote" in page and "now it is wet" in page
    assert "&lt;b&gt;" in page and "<b>" not in page.split("The patient wrote", 1)[1]
    dispatch = login_client("admin").get(f"/console/dispatch/tickets/{ticket.id}").text
    assert "The patient wrote" in dispatch and "now it is wet" in dispatch


def test_a_blank_message_adds_nothing_and_bad_messages_are_refused(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    client, path, form = _help_form(login_client)
    assert client.post(path, data={**form, "message": " \n\t "}).status_code == 200
    assert patient_messages(_help_ticket(store)) == []
    for bad in ("x" * 1001, "bell \x07 here", "escape \x1b[2J", "nul \x00"):
        refused = client.post(path, data={**form, "message": bad})
        assert refused.status_code == 422, (bad[:10], refused.status_code)
    assert patient_messages(_help_ticket(store)) == []


def test_a_help_request_holds_a_bounded_number_of_messages(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    client, path, form = _help_form(login_client)
    for n in range(MAX_MESSAGES):
        assert client.post(path, data={**form, "message": f"m{n}"}).status_code == 200
    refused = client.post(path, data={**form, "message": "one more"})
    assert refused.status_code == 429 and "care team will contact you" in refused.text
    assert len(patient_messages(_help_ticket(store))) == MAX_MESSAGES
