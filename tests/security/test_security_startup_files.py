"""A process told to use TLS, a key or a registry it cannot read stops at once and says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.pki import Pki, Role
from vigil.cli import app
from vigil.settings import VigilSettings


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    pki = Pki(tmp_path / "pki")
    pki.init()
    pki.issue_client("gw-1", Role.GATEWAY)
    return pki


def _env(
    tmp_path: Path, section: str, ca: Path, cert: Path, key: Path, **more: str
) -> dict[str, str]:
    prefix = f"VIGIL_{section.upper()}__"
    return {
        "COLUMNS": "200",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{tmp_path / 'ingest.db'}",
        "VIGIL_SERVICE__STORE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "VIGIL_RULES__SNAPSHOT_PATH": str(tmp_path / "rules.snap"),
        f"{prefix}TLS_CA_FILE": str(ca),
        f"{prefix}TLS_CERT_FILE": str(cert),
        f"{prefix}TLS_KEY_FILE": str(key),
        f"{prefix}PORT": "1",  # never reached: the check comes first
        **more,
    }


COMMANDS = [
    (["gateway", "run", "--no-bridge"], "uplink_broker"),
    (["gateway", "run", "--bridge"], "site_broker"),
    (["ingest", "run", "--no-rules"], "uplink_broker"),
    (["rules", "run"], "uplink_broker"),
    (["service", "run"], "uplink_broker"),
    (["sim", "run"], "site_broker"),
]


@pytest.mark.parametrize(("args", "section"), COMMANDS)
def test_a_missing_certificate_stops_the_process_with_one_clear_line(
    tmp_path: Path, pki: Pki, args: list[str], section: str
) -> None:
    absent = tmp_path / "nowhere" / "gw-1.crt"
    env = _env(tmp_path, section, pki.ca_cert_path, absent, pki.key_path("gw-1"))
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"[{section}] TLS certificate file {absent}: No such file" in result.output
    assert "Traceback" not in result.output


def test_an_unusable_key_or_ca_is_named_too(tmp_path: Path, pki: Pki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    wrong_key = pki.key_path("gw-1").with_name("other.key")
    pki.issue_client("gw-2", Role.GATEWAY)
    wrong_key.write_bytes(pki.key_path("gw-2").read_bytes())
    for ca, key, complaint in [
        (garbage, pki.key_path("gw-1"), "TLS files unusable"),
        (pki.ca_cert_path, wrong_key, "TLS files unusable"),
    ]:
        env = _env(tmp_path, "uplink_broker", ca, pki.cert_path("gw-1"), key)
        result = CliRunner().invoke(app, ["gateway", "run", "--no-bridge"], env=env)
        assert result.exit_code == 2, result.output
        assert complaint in result.output and "Traceback" not in result.output


def test_a_missing_confirmation_key_or_registry_stops_the_process(tmp_path: Path, pki: Pki) -> None:
    tls = (pki.ca_cert_path, pki.cert_path("gw-1"), pki.key_path("gw-1"))
    absent = tmp_path / "absent.key"
    env = _env(tmp_path, "uplink_broker", *tls, VIGIL_GATEWAY__CONFIRM_KEY_FILE=str(absent))
    result = CliRunner().invoke(app, ["gateway", "run", "--no-bridge"], env=env)
    assert result.exit_code == 2, result.output
    assert f"[gateway] confirm_key_file: key file {absent}: No such file" in result.output

    registry = tmp_path / "installed.yaml"
    registry.write_text("devices: {d1: {}}\n")  # a device without its site
    env = _env(tmp_path, "uplink_broker", *tls, VIGIL_INGEST__INSTALLED_BASE_FILE=str(registry))
    result = CliRunner().invoke(app, ["ingest", "run", "--no-rules"], env=env)
    assert result.exit_code == 2, result.output
    assert f"installed base {registry}: devices.d1.site" in result.output
    assert "Traceback" not in result.output


def test_tls_settings_go_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("VIGIL_UPLINK_BROKER__TLS_CERT_FILE", "/x.crt")
    with pytest.raises(ValueError, match="tls_key_file go together"):
        VigilSettings()
    monkeypatch.setenv("VIGIL_UPLINK_BROKER__TLS_KEY_FILE", "/x.key")
    with pytest.raises(ValueError, match="needs tls_ca_file"):
        VigilSettings()
    monkeypatch.setenv("VIGIL_UPLINK_BROKER__TLS_CA_FILE", "/ca.crt")
    broker = VigilSettings().uplink_broker
    assert broker.tls() is not None and VigilSettings().site_broker.tls() is None


def test_the_runtime_settings_carry_tls_and_keys(tmp_path: Path, pki: Pki) -> None:
    master = pki.confirm_master_path
    settings = VigilSettings(
        uplink_broker={  # type: ignore[arg-type]
            "tls_ca_file": pki.ca_cert_path,
            "tls_cert_file": pki.cert_path("gw-1"),
            "tls_key_file": pki.key_path("gw-1"),
        },
        gateway={"confirm_key_file": pki.confirm_key_path("gw-1"), "bridge_equipment": False},  # type: ignore[arg-type]
        ingest={"confirm_key_file": master},  # type: ignore[arg-type]
    )
    uplink = settings.gateway_settings().uplink
    assert uplink.tls is not None and uplink.tls.cert == pki.cert_path("gw-1")
    assert uplink.confirm_key is not None and len(uplink.confirm_key) == 32
    ingest = settings.ingest_settings()
    assert ingest.tls == uplink.tls and ingest.consumer().tls == uplink.tls
    assert ingest.confirm_key("gw-1") == uplink.confirm_key  # what the PKI derived
    assert settings.rules_worker_settings().consumer().tls == uplink.tls
    assert settings.service_worker_settings().tls == uplink.tls
