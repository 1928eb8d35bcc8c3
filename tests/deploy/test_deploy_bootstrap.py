"""`vigil bootstrap`, the first-run step of docker compose: idempotent, the token shown once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.store import SqliteStore
from service.tokens import TokenRegistry
from tests.servers import free_port
from vigil.cli import app


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("VIGIL_INGEST__STORAGE_URL", f"sqlite:///{tmp_path}/vigil.db")
    monkeypatch.setenv("VIGIL_SERVICE__STORE_URL", f"sqlite:///{tmp_path}/service.db")
    monkeypatch.setenv("VIGIL_SERVICE__TOKENS_FILE", str(tmp_path / "state" / "tokens.json"))
    return tmp_path


def test_the_first_run_prints_one_admin_token_and_later_runs_keep_everything(env: Path) -> None:
    first = CliRunner().invoke(app, ["bootstrap", "--demo-ward", "5"])
    assert first.exit_code == 0, first.output
    tokens = re.findall(r"^vgl_\S+$", first.output, re.MULTILINE)
    assert len(tokens) == 1 and "shown once" in first.output
    registry = TokenRegistry(env / "state" / "tokens.json")
    record = registry.lookup(tokens[0])
    assert record is not None and record.role == "admin"
    assert "demo ward: site site-a with 5 patches" in first.output
    again = CliRunner().invoke(app, ["bootstrap", "--demo-ward", "5"])
    assert again.exit_code == 0, again.output
    assert "vgl_" not in again.output  # a secret is shown once only
    assert f"admin token {record.id} exists already" in again.output
    assert "site site-a exists already, kept" in again.output
    store = SqliteStore(env / "service.db")
    try:
        assert {d.id for d in store.devices()} >= {f"patch-{i:04d}" for i in range(5)}
        assert {e.id for e in store.engineers()} == {"eng-ana", "eng-ben", "eng-cem", "eng-dia"}
    finally:
        store.close()


def test_a_revoked_admin_token_is_replaced(env: Path) -> None:
    CliRunner().invoke(app, ["bootstrap"])
    registry = TokenRegistry(env / "state" / "tokens.json")
    registry.revoke(registry.records()[0].id)
    again = CliRunner().invoke(app, ["bootstrap"])
    assert again.exit_code == 0 and len(re.findall(r"^vgl_", again.output, re.M)) == 1


def test_an_unreachable_database_is_one_line_and_exit_1_without_its_password(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://vigil:s3cret@127.0.0.1:{free_port()}/vigil"
    monkeypatch.setenv("VIGIL_INGEST__STORAGE_URL", url)
    result = CliRunner().invoke(app, ["bootstrap", "--wait-s", "0"])
    assert result.exit_code == 1
    assert "vigil bootstrap: telemetry store postgresql://vigil@127.0.0.1" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
