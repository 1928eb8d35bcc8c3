"""docker-compose.yml and deploy/ stay real without a Docker engine: every command runs, every
VIGIL_ variable is a setting, every mounted file exists, every image is pinned, every service
has a healthcheck and waits only for services that exist."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.deploy.compose import (
    HEALTHCHECK_SCRIPT,
    ROOT,
    compose,
    depends_on,
    environment,
    mounts,
    script_commands,
    services,
    start_order,
    vigil_services,
)
from vigil.cli import app
from vigil.settings import VigilSettings

VIGIL = Path(sys.executable).parent / "vigil"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _commands(name: str) -> list[list[str]]:
    """The vigil command lines a service runs (the bootstrap's script has several)."""
    service = vigil_services()[name]
    if service.get("entrypoint"):
        return [line[1:] for line in script_commands(service["command"][0])]
    return [[str(a) for a in service["command"]]]


@pytest.mark.parametrize("name", sorted(vigil_services()))
def test_every_command_of_a_vigil_service_runs_in_the_project_venv(name: str) -> None:
    for command in _commands(name):
        done = subprocess.run(
            [str(VIGIL), *command, "--help"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{name}: vigil {' '.join(command)}: {done.stderr}"


def _setting_path(key: str) -> list[str]:
    assert key.startswith("VIGIL_"), key
    return key.removeprefix("VIGIL_").lower().split("__")


@pytest.mark.parametrize("name", sorted(vigil_services()))
def test_every_variable_is_a_setting_and_its_value_valid(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    env = environment(vigil_services()[name])
    for key, value in env.items():
        section, *rest = _setting_path(key)
        assert section in VigilSettings.model_fields, f"{name}: {key} names no section"
        model = VigilSettings.model_fields[section].annotation
        assert len(rest) == 1, f"{name}: {key} is not VIGIL_<SECTION>__<KEY>"
        assert isinstance(model, type) and rest[0] in model.model_fields, (  # type: ignore[attr-defined]
            f"{name}: {key}: [{section}] has no key {rest[0]!r}"
        )
        monkeypatch.setenv(key, value)
    VigilSettings()  # a malformed value is an error


def test_ingest_and_rules_replicas_have_distinct_stable_client_ids(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    ids: dict[str, str] = {}
    for name, service in vigil_services().items():
        command = [str(a) for a in service.get("command", [])]
        if command[:2] not in (["ingest", "run"], ["rules", "run"]):
            continue
        assert "--replica" in command, f"{name} runs without --replica"
        replica = int(command[command.index("--replica") + 1])
        settings = VigilSettings(**{command[0]: {"replica": replica}})
        ids[name] = (
            str(settings.ingest.client_id)
            if command[0] == "ingest"
            else settings.rules_worker_settings(replica).client_id
        )
    assert ids == {
        "ingest": "vigil-ingest-1",
        "ingest-2": "vigil-ingest-2",
        "rules": "vigil-rules-1",
        "rules-2": "vigil-rules-2",
    }


def test_every_mounted_file_exists_and_every_volume_is_declared() -> None:
    declared = set(compose()["volumes"])
    for name, service in services().items():
        for mount in mounts(service):
            if mount.is_bind:
                assert (ROOT / mount.source).exists(), f"{name}: {mount.source} is not in the repo"
            else:
                assert mount.source in declared, f"{name}: volume {mount.source} not declared"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        image = str(service["image"])
        repo, _, tag = image.partition("@")[0].rpartition(":")
        assert repo and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
        if "build" in service:
            assert tag == VERSION, f"{name}: the built image is tagged {tag}, not {VERSION}"
    base = (ROOT / "Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
    assert re.search(r":\d+\.\d+\.\d+", base), f"Dockerfile FROM {base} is not pinned"


def test_every_long_running_service_has_a_healthcheck_and_real_dependencies() -> None:
    all_services = services()
    assert start_order()  # no cycles
    for name, service in all_services.items():
        one_shot = service.get("restart") == "no"
        assert one_shot or "healthcheck" in service, f"{name} has no healthcheck"
        for target, condition in depends_on(service).items():
            assert target in all_services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{name}: {target} has none"
            if condition == "service_completed_successfully":
                assert all_services[target].get("restart") == "no", f"{name}: {target} restarts"


def test_healthcheck_ports_are_the_brokers_and_the_databases() -> None:
    published = {"broker": 8883, "timescaledb": 5432}
    for name, service in vigil_services().items():
        test = [str(a) for a in service.get("healthcheck", {}).get("test", [])]
        if test[1:3] == ["vigil-healthcheck", "connected"]:
            assert {int(p) for p in test[3:]} <= set(published.values()), name
            if {"broker", "timescaledb"} <= set(depends_on(service)):
                assert {int(p) for p in test[3:]} == set(published.values()), name


def test_the_image_has_every_package_and_the_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        folder = package.rstrip("*")
        assert f"COPY {folder} {folder}" in dockerfile, f"the image lacks {folder}/"
    assert "deploy/healthcheck.py /usr/local/bin/vigil-healthcheck" in dockerfile


def test_the_demo_ward_seeded_is_the_ward_the_gateway_simulates() -> None:
    bootstrap = "\n".join(" ".join(c) for c in _commands("bootstrap"))
    gateway = _commands("gateway")[0]
    patches = gateway[gateway.index("--simulate-patches") + 1]
    assert f"bootstrap --demo-ward {patches}" in bootstrap


def test_grafana_provisions_the_dashboards_it_mounts() -> None:
    grafana = services()["grafana"]
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/vigil.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert any(
        m.target == path and m.source == "./deploy/grafana/dashboards" for m in mounts(grafana)
    )
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))


def test_the_deploy_broker_files_are_what_vigil_broker_config_writes(tmp_path: Path) -> None:
    runner = CliRunner()
    pki = str(tmp_path / "pki")
    at = ["--files-at", "/mosquitto/pki", "--config-at", "/mosquitto/config"]
    out = str(tmp_path / "out")
    for args in (
        ["pki", "init", "--dir", pki],
        ["pki", "server", "broker", "--host", "broker", "--dir", pki],
        ["broker", "config", "--kind", "uplink", "--out", out, "--pki-dir", pki, *at],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    for name in ("mosquitto.conf", "acl"):
        assert (ROOT / "deploy" / name).read_text() == (tmp_path / "out" / name).read_text(), (
            f"deploy/{name} is stale: regenerate it as docs/deployment.md says"
        )
    assert "pki:/mosquitto/pki:ro" in services()["broker"]["volumes"]


def _healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *args], capture_output=True, text=True, timeout=30
    )


def test_the_healthcheck_sees_a_process_s_own_connections_only() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _healthcheck("connected", str(port), "--pid", str(os.getpid())).returncode == 1
        with socket.create_connection(("127.0.0.1", port)):
            done = _healthcheck("connected", str(port), "--pid", str(os.getpid()))
            assert done.returncode == 0, done.stderr
            # The listening side (this process too) is not a connection *to* the port; the
            # check is per process: its child has no such connection.
            other = _healthcheck("connected", str(port), "--pid", "1")
            assert other.returncode == 1 and "no connection to port(s)" in other.stderr
    assert (
        "GET http://127.0.0.1:1/health" in _healthcheck("http", "http://127.0.0.1:1/health").stderr
    )


# The Compose specification's values for the keys this file uses (no engine here to say so).
SERVICE_KEYS = {
    "build", "image", "restart", "volumes", "environment", "entrypoint", "command", "ports",
    "depends_on", "healthcheck",
}  # fmt: skip
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval"}


def test_every_key_and_value_is_one_compose_knows() -> None:
    for name, service in services().items():
        assert set(service) <= SERVICE_KEYS, f"{name}: {set(service) - SERVICE_KEYS}"
        assert service["restart"] in RESTART, name
        assert set(depends_on(service).values()) <= CONDITIONS, name
        check = service.get("healthcheck", {})
        assert set(check) <= HEALTHCHECK_KEYS, f"{name}: {set(check) - HEALTHCHECK_KEYS}"
        if check:
            test = check["test"]
            assert test[0] == "CMD" or (test[0] == "CMD-SHELL" and len(test) == 2), name
            assert all(isinstance(a, str) for a in test), f"{name}: a non-string argument"
            for key in ("interval", "timeout", "start_period"):
                assert re.fullmatch(r"\d+(ms|s|m|h)", check.get(key, "1s")), f"{name}: {key}"
        for value in environment(service).values():
            assert "${" not in value, f"{name}: {value} needs a .env nobody ships"
        for port in service.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", str(port)), f"{name}: quote ports as HOST:CONTAINER"
