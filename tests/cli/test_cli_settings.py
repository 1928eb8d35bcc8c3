"""Settings: the TOML file named by VIGIL_CONFIG, VIGIL_… variables over it, defaults under it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.settings import VigilSettings

TOML = """
[uplink_broker]
host = "broker.file"
port = 2883

[rules]
packs = ["equipment"]
tick_interval_s = 30
snapshot_path = "/data/rules.snap"

[service]
store_url = "sqlite:///file-service.db"
webhook_urls = ["https://desk.example/hook"]
webhook_secret = "s3cret"
api_port = 9090
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vigil.toml"
    path.write_text(TOML)
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    return path


def test_the_file_named_by_vigil_config_is_read(config: Path) -> None:
    s = VigilSettings()
    assert (s.uplink_broker.host, s.uplink_broker.port) == ("broker.file", 2883)
    assert s.rules.packs == ["equipment"] and s.rules.tick_interval_s == 30.0
    assert s.rules.snapshot_path == Path("/data/rules.snap")
    assert s.service.store_url == "sqlite:///file-service.db" and s.service.api_port == 9090
    # Untouched keys keep their defaults, in touched and untouched sections.
    assert s.rules.client_id == "vigil-rules-1" and s.ingest.client_id == "vigil-ingest-1"


def test_environment_wins_over_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_UPLINK_BROKER__PORT", "3883")
    monkeypatch.setenv("VIGIL_RULES__PACKS", '["dressings", "equipment"]')
    monkeypatch.setenv("VIGIL_SERVICE__STORE_URL", "postgresql://env/vigil")
    s = VigilSettings()
    assert (s.uplink_broker.host, s.uplink_broker.port) == ("broker.file", 3883)
    assert s.rules.packs == ["dressings", "equipment"]
    assert s.rules.tick_interval_s == 30.0  # from the file: the environment does not name it
    assert s.service.store_url == "postgresql://env/vigil"


def test_settings_reach_the_runtime_objects(config: Path) -> None:
    s = VigilSettings()
    runtime = s.runtime_settings()
    assert (runtime.tick_every_s, runtime.snapshot_path) == (30.0, Path("/data/rules.snap"))
    worker = s.rules_worker_settings()
    assert (worker.host, worker.port, worker.shared_group) == ("broker.file", 2883, "rules")
    service = s.service_worker_settings()
    assert (service.host, service.port) == ("broker.file", 2883)
    [team] = service.notify.service_team
    assert (team.url, team.secret) == ("https://desk.example/hook", "s3cret")


def test_without_a_file_the_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    s = VigilSettings()
    assert s.uplink_broker.port == 1883 and s.service.store_url == "sqlite:///var/service.db"


def test_a_misspelt_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[rules]\ntick_intervall_s = 5\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    with pytest.raises(ValidationError, match="tick_intervall_s"):
        VigilSettings()


def test_webhooks_without_a_secret_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("VIGIL_SERVICE__WEBHOOK_URLS", '["https://desk.example/hook"]')
    with pytest.raises(ValidationError, match="webhook_secret"):
        VigilSettings()
