"""Ingest replicas: each gets its own stable MQTT client id from its replica number."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.settings import VigilSettings


@pytest.fixture(autouse=True)
def no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))


def test_the_default_replica_is_one() -> None:
    assert VigilSettings().ingest_settings().client_id == "vigil-ingest-1"


def test_the_replica_names_the_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST__REPLICA", "3")
    assert VigilSettings().ingest_settings().client_id == "vigil-ingest-3"


def test_a_replica_from_the_command_line_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[ingest]\nreplica = 2\nshared_group = "ingest"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    assert VigilSettings().ingest_settings().client_id == "vigil-ingest-2"
    # What `vigil ingest run --replica 5` builds: the rest of the section is kept.
    s = VigilSettings(ingest={"replica": 5})  # type: ignore[arg-type]
    assert (s.ingest_settings().client_id, s.ingest.shared_group) == ("vigil-ingest-5", "ingest")


def test_an_explicit_client_id_overrides_the_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST__REPLICA", "3")
    monkeypatch.setenv("VIGIL_INGEST__CLIENT_ID", "ingest-east")
    assert VigilSettings().ingest_settings().client_id == "ingest-east"


def test_a_negative_replica_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST__REPLICA", "-1")
    with pytest.raises(ValidationError, match="replica"):
        VigilSettings()
