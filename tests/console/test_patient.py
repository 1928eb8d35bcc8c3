"""The patient's page in process: plain-language status, scoping, request help, its budget."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from contract import Severity
from service.console.patient import statuses
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
