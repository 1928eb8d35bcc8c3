"""docker-compose.yml and deploy/ stay real: generated broker files, a bootstrap that runs, and
services whose every VIGIL_… variable is a setting and every TLS file one the bootstrap made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from vigil.cli import app
from vigil.settings import VigilSettings

ROOT = Path(__file__).resolve().parents[2]
VIGIL_BIN = Path(sys.executable).parent


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def _vigil_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return {name: s for name, s in services.items() if s.get("image") == "vigil:latest"}


def test_the_deploy_broker_files_are_what_vigil_broker_config_writes(tmp_path: Path) -> None:
    runner = CliRunner()
    pki = str(tmp_path / "pki")
    at = ["--files-at", "/mosquitto/pki", "--config-at", "/mosquitto/config"]
    for args in (
        ["pki", "init", "--dir", pki],
        ["pki", "server", "broker", "--host", "broker", "--dir", pki],
        [
            "broker",
            "config",
            "--kind",
            "uplink",
            "--out",
            str(tmp_path / "out"),
            "--pki-dir",
            pki,
            *at,
        ],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    for name in ("mosquitto.conf", "acl"):
        assert (ROOT / "deploy" / name).read_text() == (tmp_path / "out" / name).read_text(), (
            f"deploy/{name} is stale: regenerate it as docs/deployment.md says"
        )
    broker = _compose()["services"]["broker"]
    assert "pki:/mosquitto/pki:ro" in broker["volumes"]


def test_the_bootstrap_runs_twice_and_issues_every_file_the_services_name(tmp_path: Path) -> None:
    bootstrap = _vigil_services()["bootstrap"]
    assert bootstrap["entrypoint"] == ["sh", "-euc"]
    # Compose writes $$ for a literal $; the volume is mounted at /pki.
    script = bootstrap["command"][0].replace("$$", "$").replace("/pki", str(tmp_path / "pki"))
    env = {**os.environ, "PATH": f"{VIGIL_BIN}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):  # idempotent: a restarted stack keeps its identities
        done = subprocess.run(
            ["sh", "-euc", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "exists already, kept" in done.stdout
    for name, service in _vigil_services().items():
        for key, value in service.get("environment", {}).items():
            if key.endswith("_FILE") and str(value).startswith("/pki/"):
                path = tmp_path / str(value).lstrip("/")
                assert path.is_file(), f"{name}: {key}={value} is not issued by the bootstrap"


@pytest.mark.parametrize("name", sorted(_vigil_services()))
def test_every_services_variables_are_settings_and_its_command_exists(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service = _vigil_services()[name]
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    for key, value in service.get("environment", {}).items():
        section = key.removeprefix("VIGIL_").split("__")[0].lower()
        assert section in VigilSettings.model_fields, f"{name}: {key} names no section"
        monkeypatch.setenv(key, str(value))
    VigilSettings()  # an unknown key or a malformed value in a section is an error
    command = service["command"]
    if service.get("entrypoint"):
        return  # the bootstrap script: run for real above
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
