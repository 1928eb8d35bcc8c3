"""A small hospital world for the console tests: two sites, wards, a home kit, readings, alerts.

Site ``s1`` (Shanghai time) has wards W1 and W2 and patient ``p1``'s home kit; site ``s2`` is
another hospital whose devices ``s1``'s staff must never see. ``infect`` raises an alert the
way the pipeline does: the rules' event into the reading store, the worker's intake into the
service store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from contract import AlertEvent, AlertTransition, Batch, DeviceKind, Reading, Severity
from infra.telemetry.base import ReadingStore
from infra.time_us import us_from_datetime
from service.alert_consumer import intake
from service.model import Device, Engineer, Location, Patient, Site
from service.store import ServiceStore
from service.worker import WorkerSettings

SITE = "s1"
OTHER_SITE = "s2"
PATIENT = "p1"
OTHER_PATIENT = "p2"
HOME_PATCH = "patch-h01"
INFECTED = "patch-w103"
OTHER_PATCH = "patch-x201"
PRINCIPALS = {
    "nurse": {"role": "hospital", "subject": SITE},
    "other-nurse": {"role": "hospital", "subject": OTHER_SITE},
    "patient": {"role": "patient", "subject": PATIENT},
    "other-patient": {"role": "patient", "subject": OTHER_PATIENT},
    "engineer": {"role": "engineer", "subject": "eng-1"},
    "admin": {"role": "admin", "subject": None},
}
SITE_TOML = '[sites.s1]\ntimezone = "Asia/Shanghai"\n'


def _patch(device_id: str, site: str, ward: str = "", room: str = "", patient: str | None = None):
    return Device(
        id=device_id,
        kind=DeviceKind.PATCH,
        model="WP-2",
        serial=f"SN-{device_id}",
        lot="L7",
        installed_on=date(2026, 1, 5),
        site_id=site,
        location=Location(ward=ward, room=room) if ward else None,
        patient=patient,
    )


def seed(store: ServiceStore, readings: ReadingStore, now: datetime) -> None:
    """Sites, devices, patients, an engineer, and a day of each patch's latest readings."""
    store.put_site(Site(id=SITE, hospital="Ruijin North", region="north"))
    store.put_site(Site(id=OTHER_SITE, hospital="Other General", region="north"))
    devices = [
        _patch("patch-w101", SITE, "W1", "101"),
        _patch("patch-w102", SITE, "W1", "102"),
        _patch(INFECTED, SITE, "W1", "103", patient="p3"),
        _patch("patch-w201", SITE, "W2", "201"),
        _patch(HOME_PATCH, SITE, patient=PATIENT),
        _patch(OTHER_PATCH, OTHER_SITE, "X", "1", patient=OTHER_PATIENT),
    ]
    for device in devices:
        store.put_device(device)
    store.put_patient(Patient(id=PATIENT, site_id=SITE, kit=(HOME_PATCH,)))
    store.put_patient(Patient(id="p3", site_id=SITE, kit=(INFECTED,)))
    store.put_patient(Patient(id=OTHER_PATIENT, site_id=OTHER_SITE, kit=(OTHER_PATCH,)))
    store.put_engineer(
        Engineer(id="eng-1", name="Li Wei", region="north", skills=frozenset({DeviceKind.PATCH}))
    )
    readings.migrate()
    batch = []
    seq = 0
    for i, device in enumerate(devices):
        for minutes in (30, 5):
            seq += 1
            ts = us_from_datetime(now - timedelta(minutes=minutes))
            batch += [
                Reading(device.id, "wound_ph", 7.1 + i * 0.05, "pH", ts, seq),
                Reading(device.id, "wound_temp", 33.0 + i * 0.1, "degC", ts, seq),
                Reading(device.id, "exudate", 20.0 + i, "%", ts, seq),
                Reading(device.id, "battery", 80.0 - 12 * i, "%", ts, seq),
            ]
    readings.store_batches([Batch("gw-test", 1, tuple(batch))])


def infection(device_id: str, at: datetime) -> AlertEvent:
    """A confirmed wound-infection alert with its evidence window, as the rules engine makes it."""
    at_us = us_from_datetime(at)
    window = [[at_us - (20 - k) * 600_000_000, 33.0 + 0.12 * k] for k in range(21)]
    return AlertEvent(
        device_id=device_id,
        rule_id="wound_infection_temp",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=at_us,
        message="wound temperature 2.4 °C over the wound's baseline",
        evidence={
            "rule": "wound_infection_temp",
            "kind": "delta_baseline",
            "metric": "wound_temp",
            "signal": 2.4,
            "window": window,
        },
    )


def raise_alert(
    store: ServiceStore, readings: ReadingStore, alert: AlertEvent, now: datetime
) -> None:
    """What the pipeline does with a new alert: the rules store it, the worker opens a ticket."""
    readings.store_alert_events([alert])
    intake(store, alert, now, WorkerSettings())


def when(now: datetime | None = None) -> datetime:
    """Now (UTC), to the second."""
    return (now or datetime.now(UTC)).replace(microsecond=0)
