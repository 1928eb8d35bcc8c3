"""A small installed base with readings, for the FHIR and traceability tests.

Two sites; a home patient at each with a dressing patch from lot ``LOT-A``; a patch of
``LOT-B``; a piece of equipment. Patch ``k:1`` has an id that is no FHIR id (``:``), so its
FHIR id is hashed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from contract import METRICS, Batch, DeviceKind, Reading
from infra.telemetry.sqlite import SQLiteStore
from service.api import Principal, build_app
from service.model import Device, Patient, Site
from service.store import SqliteStore

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T0_US = 1_772_000_000_000_000  # 2026-02-25, before NOW
STEP_US = 60_000_000
TICKS = 30

TOKENS = {
    "admin-token-0123456789abcdef0123456789": {"role": "admin"},
    "hospital-s1-token-0123456789abcdef0123": {"role": "hospital", "subject": "s1"},
    "hospital-s2-token-0123456789abcdef0123": {"role": "hospital", "subject": "s2"},
    "patient-p1-token-0123456789abcdef01234": {"role": "patient", "subject": "p1"},
    "engineer-e1-token-0123456789abcdef0123": {"role": "engineer", "subject": "e1"},
}
ADMIN, H1, H2, P1, ENG = TOKENS


def auth(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


def patch(device_id: str, site_id: str, patient: str | None, lot: str) -> Device:
    """A dressing patch."""
    return Device(
        id=device_id,
        kind=DeviceKind.PATCH,
        model="WD-2",
        serial=f"SN-{device_id.replace(':', '')}",
        lot=lot,
        firmware="2.1.0",
        installed_on=date(2026, 2, 1),
        site_id=site_id,
        patient=patient,
    )


def seed_store(store: SqliteStore) -> None:
    """Sites s1 and s2, patients p1 (s1) and p2 (s2), patches and one ultrasound."""
    store.put_site(Site(id="s1", hospital="Hospital One", region="north"))
    store.put_site(Site(id="s2", hospital="Hospital Two", region="south"))
    store.put_device(patch("k:1", "s1", "p1", "LOT-A"))
    store.put_device(patch("k2", "s2", "p2", "LOT-A"))
    store.put_device(patch("k3", "s1", None, "LOT-B"))
    store.put_device(
        Device(
            id="us-1",
            kind=DeviceKind.ULTRASOUND,
            model="US-9",
            serial="SN-US1",
            installed_on=date(2025, 1, 1),
            site_id="s1",
        )
    )
    store.put_patient(Patient(id="p1", site_id="s1", kit=("k:1",)))
    store.put_patient(Patient(id="p2", site_id="s2", kit=("k2",)))


def value_of(metric: str, i: int) -> float:
    """A valid value of ``metric`` at tick ``i``."""
    spec = METRICS[metric]
    if spec.integral:
        return float(int(spec.low) + i % 3) if spec.low >= 0 else float(-60 - i % 5)
    return spec.low + (spec.high - spec.low) * (0.3 + 0.01 * (i % 10))


def readings_of(device: Device, ticks: int = TICKS) -> list[Reading]:
    """``ticks`` readings of every metric of ``device``, one a minute from T0."""
    from contract import KIND_METRICS

    return [
        Reading(device.id, m, value_of(m, i), METRICS[m].unit, T0_US + i * STEP_US, i)
        for i in range(ticks)
        for m in sorted(KIND_METRICS[device.kind])
    ]


def seed_readings(store: SQLiteStore, devices: list[Device]) -> list[Reading]:
    """Store readings of ``devices``; return them."""
    store.migrate()
    batches = [Batch("gw-1", n, tuple(readings_of(d))) for n, d in enumerate(devices)]
    store.store_batches(batches)
    return [r for b in batches for r in b.readings]


@contextmanager
def api(tmp_path: Path) -> Iterator[tuple[TestClient, SqliteStore, list[Reading]]]:
    """The API over the seeded stores, as a TestClient."""
    from fastapi.testclient import TestClient

    store = SqliteStore(tmp_path / "service.db")
    seed_store(store)
    readings = SQLiteStore(str(tmp_path / "readings.db"))
    stored = seed_readings(readings, store.devices())
    principals = {t: Principal.model_validate(p) for t, p in TOKENS.items()}
    app = build_app(store, principals, readings=readings, clock=lambda: NOW)
    try:
        with TestClient(app) as client:
            yield client, store, stored
    finally:
        readings.close()
        store.close()
