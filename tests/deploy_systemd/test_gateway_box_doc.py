"""docs/gateway-box.md's configuration is one vigil reads, and agrees with the gateway unit."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.deploy_systemd.test_units import UNITS, one, parse
from vigil.settings import VigilSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway-box.md"
TEXT = DOC.read_text(encoding="utf-8")


def test_the_documented_vigil_toml_is_valid_and_matches_the_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
    config = tmp_path / "vigil.toml"
    config.write_text(block)
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    settings = VigilSettings()
    assert settings.gateway.id == "gw-ward-3"
    assert settings.uplink_broker.port == 8883 and settings.uplink_broker.tls() is not None
    unit = parse(UNITS / "vigil-gateway.service")
    environment = dict(e.split("=", 1) for e in unit["Service"]["Environment"])
    assert str(settings.gateway.outbox_path) == environment["VIGIL_GATEWAY__OUTBOX_PATH"]
    assert environment["VIGIL_CONFIG"] == "/etc/vigil/vigil.toml"


def test_the_documented_drop_in_runs_the_gateway_from_the_units_state_directory() -> None:
    drop_in = re.search(r"```ini\n\[Service\]\nExecStart=\nExecStart=(.*?)\n```", TEXT)
    assert drop_in, "no ExecStart drop-in in the document"
    command = shlex.split(drop_in.group(1))
    unit = parse(UNITS / "vigil-gateway.service")
    assert command[:3] == shlex.split(one(unit, "Service", "ExecStart"))
    state_dir = command[command.index("--state-dir") + 1]
    assert state_dir == one(unit, "Service", "ReadWritePaths")
