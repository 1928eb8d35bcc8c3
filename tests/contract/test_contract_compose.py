"""docker-compose.yml is for users; no Docker engine runs here, so we validate it by parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_whole_data_path() -> None:
    services = _compose()["services"]
    assert {"timescaledb", "broker", "gateway", "ingest", "api", "grafana"} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert "mosquitto" in services["broker"]["image"]


def test_compose_services_run_vigil_commands() -> None:
    services = _compose()["services"]
    assert services["gateway"]["command"][:2] == ["gateway", "run"]
    assert services["ingest"]["command"][:2] == ["ingest", "run"]
    ingest_env = services["ingest"]["environment"]
    assert ingest_env["VIGIL_INGEST__STORAGE_URL"].startswith("postgresql://")
    assert ingest_env["VIGIL_UPLINK_BROKER__HOST"] == "broker"
    for name in ("gateway", "ingest"):
        assert "broker" in services[name]["depends_on"]


def test_compose_volumes_and_broker_config_exist() -> None:
    compose = _compose()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), source
            else:
                assert source in compose.get("volumes", {}), source
