"""`vigil gateway profile`: ward and home-kit plans from a real key store file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gateway.keystore import KeyStore, PairingRecord, save_keystore
from vigil.cli import app

runner = CliRunner()


def _keys(tmp_path: Path) -> Path:
    store = KeyStore(
        (
            PairingRecord("AA:BB:CC:00:00:01", bytes(range(1, 17)), "patch-0001", "pt-ann"),
            PairingRecord("AA:BB:CC:00:00:02", bytes(range(2, 18)), "patch-0002", "pt-ann"),
            PairingRecord("AA:BB:CC:00:00:03", bytes(range(3, 19)), "patch-0003", "pt-bob"),
        )
    )
    path = tmp_path / "keys.toml"
    save_keystore(store, path)
    return path


def test_home_kit_plan_shows_one_patient_and_the_outbox_sizing(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "gateway",
            "profile",
            "--keys",
            str(_keys(tmp_path)),
            "--patient",
            "pt-ann",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "home_kit" in result.output
    assert "patch-0001, patch-0002" in result.output
    assert "patch-0003" not in result.output  # another patient's dressing
    assert "days offline" in result.output and "MB of disk" in result.output


def test_ward_plan_takes_every_paired_patch(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["gateway", "profile", "--keys", str(_keys(tmp_path)), "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "ward" in result.output
    assert "patch-0001, patch-0002, patch-0003" in result.output


def test_a_world_readable_key_file_is_refused_clearly(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    keys.chmod(0o644)
    result = runner.invoke(app, ["gateway", "profile", "--keys", str(keys)])
    assert result.exit_code == 2
    assert "chmod 600" in result.output
