"""The systemd units in deploy/systemd: their commands exist, they verify, they are hardened.

Each unit's ExecStart is run with ``--help`` (the installed ``/opt/vigil/bin/vigil`` replaced by
this venv's); ``systemd-analyze verify`` checks every unit where systemd-analyze is installed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_VIGIL = "/opt/vigil/bin/vigil"
VIGIL = str(Path(sys.executable).parent / "vigil")
UNIT_NAMES = sorted(p.name for p in UNITS.glob("*.service"))


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section → key → every value given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def test_there_is_a_unit_for_every_process() -> None:
    assert UNIT_NAMES == [
        "vigil-api.service",
        "vigil-gateway.service",
        "vigil-ingest@.service",
        "vigil-rules@.service",
        "vigil-service-worker.service",
    ]


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_the_command_of_each_unit_exists(name: str) -> None:
    command = shlex.split(one(parse(UNITS / name), "Service", "ExecStart"))
    assert command[0] == INSTALLED_VIGIL
    argv = [VIGIL, *(arg.replace("%i", "1") for arg in command[1:]), "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
    "Restart": "on-failure",
    "User": "vigil",
}


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_unit_is_hardened_and_restarts_on_failure(name: str) -> None:
    unit = parse(UNITS / name)
    for key, value in HARDENING.items():
        assert one(unit, "Service", key) == value, key
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    writable = one(unit, "Service", "ReadWritePaths")
    assert writable.startswith("/var/lib/vigil")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_gateway_is_a_watched_notify_service_that_may_use_bluetooth() -> None:
    unit = parse(UNITS / "vigil-gateway.service")
    assert one(unit, "Service", "Type") == "notify"
    assert int(one(unit, "Service", "WatchdogSec")) > 0
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert "AF_BLUETOOTH" in one(unit, "Service", "RestrictAddressFamilies").split()
    # The outbox lives where the unit lets it write.
    outbox = next(
        e.split("=", 1)[1]
        for e in unit["Service"]["Environment"]
        if e.startswith("VIGIL_GATEWAY__OUTBOX_PATH=")
    )
    assert outbox.startswith(one(unit, "Service", "ReadWritePaths") + "/")
    # adjtimex(2) must stay allowed: the gateway reads the NTP state with it.
    assert "ProtectClock" not in unit["Service"]


def test_the_other_units_do_not_get_bluetooth() -> None:
    for name in UNIT_NAMES:
        if name != "vigil-gateway.service":
            families = one(parse(UNITS / name), "Service", "RestrictAddressFamilies")
            assert "AF_BLUETOOTH" not in families, name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("name", UNIT_NAMES)
def test_systemd_analyze_verifies_each_unit(name: str, tmp_path: Path) -> None:
    text = (UNITS / name).read_text().replace(INSTALLED_VIGIL, VIGIL)
    (tmp_path / name).write_text(text)
    target = tmp_path / name
    if name.endswith("@.service"):  # a template verifies as one of its instances
        target = tmp_path / name.replace("@.", "@1.")
        target.symlink_to(name)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Unknown or misspelt settings are only warned about: any output is a failure too.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("name", UNIT_NAMES)
def test_each_units_exposure_stays_low(name: str, tmp_path: Path) -> None:
    """systemd's score of the sandbox (0 best, 10 worst): at most 2.0 (measured 1.3-1.6)."""
    text = (UNITS / name).read_text().replace(INSTALLED_VIGIL, VIGIL)
    target = tmp_path / name.replace("@.", "@1.")
    target.write_text(text)
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout
