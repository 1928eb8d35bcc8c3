"""`vigil devices register|recall`, `vigil trace lot` and `vigil fhir upload|status`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.telemetry.sqlite import SQLiteStore
from service.fhir.validate import validate
from service.store import SqliteStore
from tests.fhir.fhir_server import CLIENT_ID, CLIENT_SECRET, FhirServer
from tests.fhir.world import seed_readings, seed_store
from tests.servers import starts_server
from vigil.cli import app

runner = CliRunner()
GTIN = "09506000134376"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    store = SqliteStore(tmp_path / "service.db")
    seed_store(store)
    readings = SQLiteStore(str(tmp_path / "readings.db"))
    seed_readings(readings, store.devices())
    readings.close()
    store.close()
    return {
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_SERVICE__STORE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{tmp_path / 'readings.db'}",
        "VIGIL_FHIR__OUTBOX_PATH": str(tmp_path / "fhir-outbox.db"),
        "COLUMNS": "200",
    }


def test_register_from_a_scan_then_recall_the_lot(env: dict[str, str], tmp_path: Path) -> None:
    scan = f"01{GTIN}17300101" + "10LOT-Z<GS>21SN-77"
    args = ["devices", "register", "--scan", scan, "--id", "k7", "--site", "s1"]
    done = runner.invoke(app, [*args, "--patient", "p1"], env=env)
    assert done.exit_code == 0, done.output
    assert f"GTIN {GTIN}, lot LOT-Z, serial SN-77, expiry 2030-01-01" in done.output
    assert "ALERT" not in done.output
    recalled = runner.invoke(app, ["devices", "recall", "LOT-Z", "--reason", "leaks"], env=env)
    assert recalled.exit_code == 0, recalled.output
    assert "1 ticket(s) opened" in recalled.output and "device k7" in recalled.output
    again = runner.invoke(app, [*args, "--patient", "p1"], env=env)
    assert "ALERT udi.lot_recalled (CRITICAL): lot LOT-Z is recalled: leaks" in again.output
    assert "ticket" not in again.output.split("ALERT")[1]  # one ticket per device and rule
    bad = runner.invoke(
        app, ["devices", "register", "--scan", "(01)123", "--id", "x", "--site", "s1"], env=env
    )
    assert bad.exit_code == 2 and "not a GS1 barcode" in bad.output


def test_trace_a_lot_across_two_sites(env: dict[str, str], tmp_path: Path) -> None:
    table = runner.invoke(app, ["trace", "lot", "LOT-A"], env=env)
    assert table.exit_code == 0, table.output
    assert "k:1" in table.output and "k2" in table.output and "p2" in table.output
    text = runner.invoke(app, ["trace", "lot", "LOT-A", "--format", "csv"], env=env).output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["site_id"] for r in rows) == ["s1", "s2"]
    assert all(int(r["readings"]) > 0 for r in rows)
    out = tmp_path / "trace.json"
    made = runner.invoke(
        app, ["trace", "lot", "LOT-A", "--format", "fhir", "--output", str(out)], env=env
    )
    assert made.exit_code == 0, made.output
    validate(json.loads(out.read_text()))


@pytest.fixture
@starts_server
def server() -> Iterator[FhirServer]:
    running = FhirServer()
    running.start()
    yield running
    running.stop()


def test_fhir_upload_once_with_client_credentials(env: dict[str, str], server: FhirServer) -> None:
    env = env | {
        "VIGIL_FHIR__BASE_URL": server.base_url,
        "VIGIL_FHIR__AUTH": "client_credentials",
        "VIGIL_FHIR__TOKEN_URL": server.token_url,
        "VIGIL_FHIR__CLIENT_ID": CLIENT_ID,
        "VIGIL_FHIR__CLIENT_SECRET": CLIENT_SECRET,
        "VIGIL_FHIR__SITES": '["s1"]',
    }
    done = runner.invoke(app, ["fhir", "upload", "--once"], env=env)
    assert done.exit_code == 0, done.output
    assert "0 pending" in done.output and "0 failed" in done.output
    status = runner.invoke(app, ["fhir", "status"], env=env)
    assert "pending 0" in status.output
    assert len(server.store.of_type("Observation")) > 0
    assert len(server.store.of_type("Patient")) == 1  # p1 only: s2 is not uploaded


def test_fhir_upload_needs_a_server(env: dict[str, str]) -> None:
    done = runner.invoke(app, ["fhir", "upload", "--once"], env=env)
    assert done.exit_code == 2 and "no FHIR server" in done.output
