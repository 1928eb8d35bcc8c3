"""Quiet hours a patient chooses on their page: stored, applied to their notifications.

The store on both backends; the overlay over the notify file (a choice beats the hospital's
default, "any time" included; other recipients untouched); the alert intake's outbox rows.
The REST routes with their bad input and scope; the console form is tested in
tests/console/test_patient_quiet_hours.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contract import AlertEvent, AlertTransition, DeviceKind, Severity
from infra.time_us import us_from_datetime
from service.alert_consumer import intake
from service.api import Principal, build_app
from service.api.schemas import Role
from service.model import Channel, Device, Patient
from service.notifications import NotifyConfig, QuietHours, RecipientPrefs, opened_notifications
from service.quiet_hours import notify_items, with_choices
from service.sla import SlaConfig
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.worker import WorkerSettings
from tests.service.factories import device, site, ticket

NIGHT = QuietHours(start=time(22), end=time(7), timezone="Europe/Berlin")
EARLY = QuietHours(start=time(20), end=time(8), timezone="Europe/Berlin")
LATE = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
MORNING = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
EIGHT = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 in Berlin


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    if request.param == "postgres":
        db: ServiceStore = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(tmp_path / "service.db")
    yield db
    db.close()


def _kit(patient: str = "pt-1") -> Device:
    return device("k1", DeviceKind.PATCH).model_copy(update={"patient": patient})


def test_the_store_keeps_each_patients_latest_choice(store: ServiceStore) -> None:
    store.put_quiet_hours("patient/pt-1", NIGHT, LATE)
    store.put_quiet_hours("patient/pt-2", None, LATE)  # "send at any time"
    store.put_quiet_hours("patient/pt-1", EARLY, MORNING)  # changed their mind
    wanted = [f"patient/pt-{n}" for n in range(1, 1200)]  # more than one query's worth
    assert store.quiet_hours_chosen(wanted) == {"patient/pt-1": EARLY, "patient/pt-2": None}
    assert store.quiet_hours_chosen([]) == {}


def test_a_choice_beats_the_hospitals_default_and_touches_nobody_else(
    store: ServiceStore,
) -> None:
    file = NotifyConfig(
        patient_quiet_hours=NIGHT,
        recipients={"patient/pt-1": RecipientPrefs(channels=frozenset({Channel.MQTT}))},
    )
    notes = opened_notifications(ticket(device_id="k1"), _kit(), LATE, SlaConfig())
    assert with_choices(store, file, notes) is file  # nobody chose: the file as it is
    store.put_quiet_hours("patient/pt-1", EARLY, LATE)
    mine = with_choices(store, file, notes).prefs("patient", "pt-1")
    assert mine.quiet_hours == EARLY and mine.channels == {Channel.MQTT}  # the file's channels
    store.put_quiet_hours("patient/pt-1", None, LATE)
    items = notify_items(store, notes, file, LATE)
    assert {i.next_at for i in items if i.role == "patient"} == {LATE}  # any time, as chosen
    assert with_choices(store, file, notes).prefs("patient", "pt-9").quiet_hours == NIGHT


def test_the_alert_intake_holds_a_patients_news_until_their_own_quiet_hours_end(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "service.db")
    try:
        store.put_site(site("s1"))
        store.put_device(_kit())
        store.put_quiet_hours("patient/pt-1", EARLY, LATE)
        settings = WorkerSettings(notify=NotifyConfig(patient_quiet_hours=NIGHT))
        alert = AlertEvent(
            device_id="k1",
            rule_id="dressing.ph.rise",  # a wound rule: the patient is told, not urgently
            severity=Severity.INFO,
            transition=AlertTransition.RAISED,
            at_us=us_from_datetime(LATE),
            message="Wound pH is rising above this wound's own baseline.",
        )
        intake(store, alert, LATE, settings)
        held = [n for n in store.notifications() if n.role == "patient"]
        assert held and {n.next_at for n in held} == {EIGHT}  # theirs (08:00), not the 07:00
        assert {n.next_at for n in store.notifications() if n.role != "patient"} == {LATE}
    finally:
        store.close()


# --- the REST API ------------------------------------------------------------------------------

ADM = "quiet-admin-token-0123456789abcdef0123456"
H1 = "quiet-hospital-s1-token-0123456789abcdef0"
H2 = "quiet-hospital-s2-token-0123456789abcdef0"
PAT = "quiet-patient-pt1-token-0123456789abcdef0"
ENG = "quiet-engineer-e1-token-0123456789abcdef0"
TOKENS = {
    ADM: Principal(role=Role.ADMIN),
    H1: Principal(role=Role.HOSPITAL, subject="s1"),
    H2: Principal(role=Role.HOSPITAL, subject="s2"),
    PAT: Principal(role=Role.PATIENT, subject="pt-1"),
    ENG: Principal(role=Role.ENGINEER, subject="e1"),
}
PATH = "/patients/pt-1/quiet-hours"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, ServiceStore]]:
    store = SqliteStore(tmp_path / "service.db")
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_patient(Patient(id="pt-1", site_id="s1"))
    store.put_patient(Patient(id="pt-2", site_id="s2"))
    with TestClient(build_app(store, TOKENS, clock=lambda: LATE)) as client:
        yield client, store
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_patient_reads_and_sets_their_quiet_hours_through_the_api(
    api: tuple[TestClient, ServiceStore],
) -> None:
    client, store = api
    assert client.get(PATH, headers=_as(PAT)).json() == {"chosen": False, "quiet_hours": None}
    body = {"quiet_hours": {"start": "21:30", "end": "06:45"}}
    answer = client.put(PATH, json=body, headers=_as(PAT))
    assert answer.status_code == 200
    wanted = {"start": "21:30:00", "end": "06:45:00", "timezone": "UTC"}
    assert answer.json() == {"chosen": True, "quiet_hours": wanted}
    assert client.get(PATH, headers=_as(H1)).json()["quiet_hours"] == wanted  # their hospital
    anytime = client.put(PATH, json={"quiet_hours": None}, headers=_as(ADM))
    assert anytime.json() == {"chosen": True, "quiet_hours": None}
    assert store.quiet_hours_chosen(["patient/pt-1"]) == {"patient/pt-1": None}
    entry = store.audit_head()
    assert entry is not None and entry.action == "patient.quiet_hours"
    assert entry.actor == "admin:-" and entry.data == {"quiet_hours": "none"}


@pytest.mark.parametrize(
    "body",
    [
        {"quiet_hours": {"start": "22:00", "end": "22:00"}},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"quiet_hours": {"start": "22:00"}},
        {"quiet_hours": {"start": 22, "end": 7}},
        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
        {"quiet_hours": "22:00-07:00"},
        {},
        {"quiet_hours": None, "extra": 1},
        {"quiet_hours": {"start": "22:00\u0000", "end": "07:00"}},
    ],
)
def test_bad_quiet_hours_are_a_4xx(api: tuple[TestClient, ServiceStore], body: object) -> None:
    client, store = api
    answer = client.put(PATH, json=body, headers=_as(PAT))
    assert 400 <= answer.status_code < 500, answer.text
    assert store.quiet_hours_chosen(["patient/pt-1"]) == {}


def test_only_the_patient_their_hospital_and_admins_see_the_choice(
    api: tuple[TestClient, ServiceStore],
) -> None:
    client, _ = api
    body = {"quiet_hours": None}
    assert client.get("/patients/pt-2/quiet-hours", headers=_as(PAT)).status_code == 404
    assert client.put("/patients/pt-2/quiet-hours", json=body, headers=_as(H1)).status_code == 404
    assert client.get(PATH, headers=_as(H2)).status_code == 404
    assert client.get("/patients/nobody/quiet-hours", headers=_as(ADM)).status_code == 404
    assert client.get(PATH, headers=_as(ENG)).status_code == 403
    assert client.get(PATH).status_code == 401
    assert client.get("/patients/../quiet-hours", headers=_as(ADM)).status_code == 404
