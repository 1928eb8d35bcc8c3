"""`vigil gateway run` exits non-zero when a source dies, instead of running on as a zombie."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.source import ReadingSink
from simulator.runner import SimulatedFleet
from vigil.cli import app


async def _crash(self: SimulatedFleet, sink: ReadingSink) -> None:
    raise RuntimeError("simulated source bug")


def test_gateway_run_exits_non_zero_when_a_source_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SimulatedFleet, "run", _crash)
    env = {
        "COLUMNS": "200",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "VIGIL_GATEWAY__BRIDGE_EQUIPMENT": "false",
        "VIGIL_UPLINK_BROKER__PORT": "1",  # nothing listens: the uplink keeps retrying
    }
    result = CliRunner().invoke(app, ["gateway", "run", "--simulate-patches", "1"], env=env)
    assert result.exit_code == 1, result.output
    assert "simulated source bug" in result.output
