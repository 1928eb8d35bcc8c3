"""The traceability tables of the service store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from service.store import PostgresStore, ServiceStore, SqliteStore
from service.traceability.model import Recall, UdiRecord
from tests.fhir.world import NOW


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    db: ServiceStore
    if request.param == "postgres":
        db = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(tmp_path / "service.db")
    yield db
    db.close()


def _udi(device_id: str, lot: str, serial: str = "S1") -> UdiRecord:
    return UdiRecord(
        device_id=device_id,
        gtin="09506000134376",
        expiry=date(2027, 1, 31),
        lot=lot,
        serial=serial,
        hri=f"(01)09506000134376(10){lot}(21){serial}",
        ble_address="00-1C-05-FF-E8-74",
        registered_at=NOW,
    )


def test_udi_records_round_trip_and_filter_by_lot(store: ServiceStore) -> None:
    assert store.udi("k1") is None and store.udis() == []
    store.put_udi(_udi("k2", "LOT-A"))
    store.put_udi(_udi("k1", "LOT-A"))
    store.put_udi(_udi("k3", "LOT-B"))
    assert store.udi("k1") == _udi("k1", "LOT-A")
    assert [r.device_id for r in store.udis()] == ["k1", "k2", "k3"]
    assert [r.device_id for r in store.udis("LOT-A")] == ["k1", "k2"]
    store.put_udi(_udi("k1", "LOT-C", "S2"))  # a new registration replaces the old
    assert store.udis("LOT-A") == [_udi("k2", "LOT-A")]
    assert store.udi("k1") == _udi("k1", "LOT-C", "S2")


def test_recalls_are_kept_once_per_lot_and_gtin(store: ServiceStore) -> None:
    first = Recall(lot="LOT-A", reason="leak", recorded_at=NOW)
    store.put_recall(first)
    store.put_recall(first.model_copy(update={"reason": "leaking seal"}))
    store.put_recall(Recall(lot="LOT-A", gtin="09506000134376", recorded_at=NOW))
    assert [(r.lot, r.gtin, r.reason) for r in store.recalls()] == [
        ("LOT-A", "", "leaking seal"),
        ("LOT-A", "09506000134376", ""),
    ]
    assert store.recalls()[1].covers("LOT-A", "09506000134376")
    assert not store.recalls()[1].covers("LOT-A", "00614141999996")
    assert store.recalls()[0].covers("LOT-A", "")
