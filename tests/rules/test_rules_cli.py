"""`vigil rules check` and `vigil rules replay` on real files and a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contract import Batch, Reading
from infra.telemetry.sqlite import SQLiteStore
from tests.rules.harness import r
from vigil.commands.rules import app
from vigil.settings import VigilSettings

runner = CliRunner()


def test_check_names_file_rule_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - {id: x, kind: threshold, severity: dire, source: s, "
        "scope: {metric: nope}, raise: {above: 1}, clear: {below: 0}}\n"
    )
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        f"{bad}: rule 'x': severity: unknown severity 'dire'; use one of info, warning, "
        "critical" in lines
    )
    assert any(line.startswith(f"{bad}: rule 'x': scope.metric: unknown metric") for line in lines)


def test_check_accepts_the_shipped_packs() -> None:
    packs = Path(__file__).parents[2] / "rules" / "packs"
    result = runner.invoke(
        app, ["check", str(packs / "dressings.yaml"), str(packs / "equipment.yaml")]
    )
    assert result.exit_code == 0, result.output


def test_replay_prints_alerts_from_stored_history(tmp_path: Path) -> None:
    db = tmp_path / "vigil.db"
    with SQLiteStore(str(db)) as store:
        store.migrate()
        readings = tuple(r("us-1", "ng_voltage", m, 4.0 if m >= 5 else 0.5, m) for m in range(9))
        store.store_batches([Batch("gw", 0, readings)])
    result = runner.invoke(
        app,
        ["replay", "--storage-url", f"sqlite:///{db}", "--pack", "equipment"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "equipment.ng.high" in result.output and "raised" in result.output
    assert "us-1" in result.output


def test_replay_survives_a_reading_stamped_far_in_the_future(tmp_path: Path) -> None:
    db = tmp_path / "vigil.db"
    with SQLiteStore(str(db)) as store:
        store.migrate()
        readings = [r("us-1", "mains_voltage", m, 230.0, m) for m in range(5)]
        readings.append(Reading("us-1", "mains_voltage", 230.0, "V", 2**62, 99))  # year ~148,000
        # 25 min of a sag: the 10-minute mean of [10, 20) is out of band (EN 50160)
        readings += [r("us-1", "mains_voltage", m, 190.0, m) for m in range(5, 30)]
        store.store_batches([Batch("gw", 0, tuple(readings))])
    result = runner.invoke(
        app,
        ["replay", "--storage-url", f"sqlite:///{db}", "--pack", "equipment"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "equipment.mains.out_of_band" in result.output and "raised" in result.output
    assert "equipment.offline" not in result.output  # no tick at the far-future time


def test_a_replica_number_names_the_client_unless_a_client_id_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    assert VigilSettings().rules_worker_settings().client_id == "vigil-rules-1"
    assert VigilSettings().rules_worker_settings(replica=2).client_id == "vigil-rules-2"
    monkeypatch.setenv("VIGIL_RULES__REPLICA", "3")
    assert VigilSettings().rules_worker_settings().client_id == "vigil-rules-3"
    monkeypatch.setenv("VIGIL_RULES__CLIENT_ID", "rules-east")
    assert VigilSettings().rules_worker_settings(replica=2).client_id == "rules-east"
