"""Quiet hours a patient chooses on their page: stored, applied to their notifications.

The store on both backends; the overlay over the notify file (a choice beats the hospital's
default, "any time" included; other recipients untouched); the alert intake's outbox rows.
The console form is tested in tests/console/test_patient_quiet_hours.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from contract import AlertEvent, AlertTransition, DeviceKind, Severity
from infra.time_us import us_from_datetime
from service.alert_consumer import intake
from service.model import Channel, Device
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
