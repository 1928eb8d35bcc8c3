"""The patient's quiet hours on their page: saved in their hospital's zone, audited, scoped,
bad input refused (the service side: tests/service/test_service_quiet_hours.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time

import pytest
from fastapi.testclient import TestClient

from infra.telemetry.base import ReadingStore
from service.store import ServiceStore
from tests.console import seed
from tests.console.conftest import csrf_of


def test_the_patient_chooses_on_their_page_and_it_is_audited(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    client = login_client("patient")
    page = client.get("/console/me").text
    assert "Quiet hours" in page and "not chosen yet" in page
    path = f"/console/patients/{seed.PATIENT}/quiet-hours"
    csrf = csrf_of(client, "/console/me")
    form = {"csrf": csrf, "choice": "quiet", "start": "21:30", "end": "06:45"}
    saved = client.post(path, data=form)
    assert saved.status_code == 200 and "quiet hours were saved" in saved.text
    assert 'value="21:30"' in saved.text and "not chosen yet" not in saved.text
    (quiet,) = store.quiet_hours_chosen([f"patient/{seed.PATIENT}"]).values()
    assert quiet is not None and (quiet.start, quiet.end) == (time(21, 30), time(6, 45))
    assert quiet.timezone == "UTC"  # the hospital's zone: this app has no site calendars
    assert client.post(path, data={"csrf": csrf, "choice": "any"}).status_code == 200
    assert store.quiet_hours_chosen([f"patient/{seed.PATIENT}"]) == {
        f"patient/{seed.PATIENT}": None
    }
    entry = store.audit_head()
    assert entry is not None and entry.action == "patient.quiet_hours"
    assert entry.subject == seed.PATIENT and entry.data["quiet_hours"] == "none"


@pytest.mark.parametrize(
    "form",
    [
        {"choice": "quiet", "start": "22:00", "end": "22:00"},  # no span
        {"choice": "quiet", "start": "22:00"},  # no end
        {"choice": "quiet", "start": "25:00", "end": "07:00"},
        {"choice": "quiet", "start": "22:00\x00", "end": "07:00"},
        {"choice": "sometimes", "start": "22:00", "end": "07:00"},
        {"start": "22:00", "end": "07:00"},  # no choice
    ],
)
def test_bad_quiet_hours_are_refused(
    login_client: Callable[[str], TestClient],
    world: tuple[ServiceStore, ReadingStore],
    form: dict[str, str],
) -> None:
    store, _ = world
    client = login_client("patient")
    answer = client.post(
        f"/console/patients/{seed.PATIENT}/quiet-hours",
        data={"csrf": csrf_of(client, "/console/me"), **form},
    )
    assert 400 <= answer.status_code < 500, answer.status_code
    assert store.quiet_hours_chosen([f"patient/{seed.PATIENT}"]) == {}


def test_nobody_sets_another_patients_quiet_hours(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    client = login_client("patient")
    answer = client.post(
        f"/console/patients/{seed.OTHER_PATIENT}/quiet-hours",
        data={"csrf": csrf_of(client, "/console/me"), "choice": "any"},
    )
    assert answer.status_code == 404
    assert store.quiet_hours_chosen([f"patient/{seed.OTHER_PATIENT}"]) == {}
