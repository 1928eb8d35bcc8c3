"""`vigil service api`: settings in, app served; no tokens file is a message, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from service.tokens import TokenRegistry
from vigil.cli import app

ROOT = Path(__file__).parents[2]
VIGIL = str(Path(sys.executable).parent / "vigil")


def _settings_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "VIGIL_CONFIG": str(tmp_path / "absent.toml")}


def test_without_a_tokens_file_it_says_how_to_make_one_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "tokens.json"
    store = tmp_path / "service.db"
    run = subprocess.run(
        [VIGIL, "service", "api", "--tokens", str(missing), "--store-url", f"sqlite:///{store}"],
        cwd=tmp_path,
        env=_settings_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert f"tokens file {missing} does not exist" in message
    assert f"vigil tokens add --role admin --file {missing}" in message and "--tokens" in message
    assert not store.exists()  # refused before anything was opened


def test_the_default_tokens_file_comes_from_the_settings(tmp_path: Path) -> None:
    configured = tmp_path / "configured-tokens.json"
    env = {**_settings_env(tmp_path), "VIGIL_SERVICE__TOKENS_FILE": str(configured)}
    run = subprocess.run(
        [VIGIL, "service", "api", "--store-url", f"sqlite:///{tmp_path / 'service.db'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert str(configured) in " ".join(run.stderr.split())


async def test_the_api_gets_its_settings_without_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens.json"
    secret, _ = TokenRegistry(tokens).mint("admin", None)
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    served: dict[str, Any] = {}

    def fake_run(api: FastAPI, **options: Any) -> None:
        # uvicorn would serve this app in this process: record what it would see.
        served.update(app=api, env=dict(os.environ), **options)

    monkeypatch.setattr("uvicorn.run", fake_run)
    env_before = dict(os.environ)
    result = CliRunner().invoke(
        app,
        [
            "service",
            "api",
            "--tokens",
            str(tokens),
            "--store-url",
            f"sqlite:///{tmp_path / 'service.db'}",
            "--port",
            "8099",
        ],
    )
    assert result.exit_code == 0, result.output
    assert served["env"] == env_before
    assert "VIGIL_SERVICE_TOKENS" not in served["env"]
    assert not any(secret in value for value in served["env"].values())
    assert not any(secret.split("_")[2] in value for value in served["env"].values())
    assert served["port"] == 8099 and served["host"] == "127.0.0.1"
    assert isinstance(served["app"], FastAPI)
    transport = httpx.ASGITransport(app=served["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        auth = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/devices", headers=auth)).json() == []
