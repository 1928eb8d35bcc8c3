"""`vigil gateway doctor`: every check runs where it can, and every failure says its fix."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.doctor import Check, DoctorInputs, Status, check_disk, examine, failed
from gateway.keystore import KeyStore, make_record, save_keystore
from simulator.bleak_backend import VirtualBleakScanner, VirtualRadio, populate
from simulator.fleet import FleetSpec
from tests.servers import PrivateMosquitto
from vigil.cli import app


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.mark.services
async def test_on_a_box_with_bluetooth_every_check_runs(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    radio = VirtualRadio()
    heard, linked, absent = populate(radio, FleetSpec(patches=3))
    radio.stale_link(linked.address)  # the running gateway holds its link: it does not advertise
    radio.leave(absent.address)
    inputs = DoctorInputs(
        outbox_path=tmp_path / "outbox.db",
        outbox_bytes=1_000_000,
        broker_host="127.0.0.1",
        broker_port=mosquitto.port,
        paired=[(p.address, p.device_id) for p in (heard, linked, absent)],
        listen_s=0.3,
        scanner_backend=VirtualBleakScanner.bind(radio),
        bus_present=True,
        time_source=radio.gateway_clock,
    )
    air = asyncio.create_task(radio.run(speed=20.0))
    try:
        checks = by_name(await examine(inputs))
    finally:
        air.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await air
    statuses = {name: c.status for name, c in checks.items()}
    assert statuses == {
        "BlueZ / D-Bus": Status.OK,
        "adapter hci0": Status.OK,
        "outbox disk headroom": Status.OK,
        "uplink broker": Status.OK,
        "clock": Status.OK,
        "clock offset": Status.SKIP,  # no NTP server given
        "certificates": Status.SKIP,  # plain MQTT
        f"patch {heard.device_id}": Status.OK,
        f"patch {linked.device_id}": Status.OK,
        f"patch {absent.device_id}": Status.FAIL,
    }
    missing = checks[f"patch {absent.device_id}"]
    assert "within 2 m" in missing.fix
    assert "linked" in checks[f"patch {linked.device_id}"].detail


async def test_without_a_system_bus_bluetooth_checks_are_skipped_and_faults_have_fixes(
    tmp_path: Path,
) -> None:
    radio = VirtualRadio()
    radio.bluez.power(radio.default_adapter, False)
    radio.gateway_clock.fake_hwclock(3600)
    inputs = DoctorInputs(
        outbox_path=tmp_path / "outbox.db",
        outbox_bytes=1_000,
        broker_host="127.0.0.1",
        broker_port=1,  # nothing listens
        paired=[("C0:7A:1E:00:00:00", "patch-0000")],
        bus_present=False,
        time_source=radio.gateway_clock,
    )
    checks = await examine(inputs)
    named = by_name(checks)
    assert named["BlueZ / D-Bus"].status is Status.SKIP
    assert named["patches heard"].status is Status.SKIP
    assert named["uplink broker"].status is Status.FAIL
    assert named["clock"].status is Status.FAIL
    assert failed(checks)
    assert all(c.fix for c in checks if c.status is Status.FAIL)


def test_a_disk_too_small_for_the_outbox_fails_with_how_much_to_free(tmp_path: Path) -> None:
    check = check_disk(tmp_path / "outbox.db", 10**18)
    assert check.status is Status.FAIL and "outbox_max_readings" in check.fix


async def test_a_powered_off_adapter_is_a_failure_with_its_fix(tmp_path: Path) -> None:
    radio = VirtualRadio()
    radio.bluez.power(radio.default_adapter, False)
    inputs = DoctorInputs(
        outbox_path=tmp_path / "outbox.db",
        outbox_bytes=1_000,
        broker_host="127.0.0.1",
        broker_port=1,
        listen_s=0.05,
        scanner_backend=VirtualBleakScanner.bind(radio),
        bus_present=True,
        time_source=radio.gateway_clock,
    )
    adapter = by_name(await examine(inputs))["adapter hci0"]
    assert adapter.status is Status.FAIL and "bluetoothctl power on" in adapter.fix


def test_the_command_prints_each_check_and_exits_non_zero_on_a_failure(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    save_keystore(
        KeyStore().pair(make_record("C0:7A:1E:00:00:00", bytes(range(16)), "patch-0000", "pt")),
        keys,
    )
    env = {
        "COLUMNS": "200",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": "1",
    }
    result = CliRunner().invoke(
        app,
        ["gateway", "doctor", "--keys", str(keys), "--state-dir", str(tmp_path), "--listen-s", "0"],
        env=env,
    )
    assert result.exit_code == 1, result.output
    assert "FAIL uplink broker" in result.output and "fix:" in result.output
    assert "outbox disk headroom" in result.output and "BlueZ" in result.output
