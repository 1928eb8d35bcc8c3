"""The project PKI: identity rules, key permissions, revocation in the CRL, and its CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from infra.pki import Pki, PkiError, Role
from vigil.cli import app


@pytest.mark.parametrize(
    ("cn", "role"),
    [
        ("gw/1", Role.GATEWAY),
        ("gw+", Role.GATEWAY),
        ("#", Role.EQUIPMENT),
        ("", Role.GATEWAY),
        ("gw\x00", Role.GATEWAY),
        ("x" * 65, Role.GATEWAY),
        ("vigil-ingest", Role.GATEWAY),  # a gateway must not pose as a service
        ("vigil-anything", Role.SERVICE),
        ("gw-1", Role.SERVICE),
    ],
)
def test_bad_identities_are_refused(tmp_path: Path, cn: str, role: Role) -> None:
    pki = Pki(tmp_path)
    pki.init()
    with pytest.raises(PkiError):
        pki.issue_client(cn, role)


def test_keys_are_private_and_revocation_reaches_the_crl(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    assert pki.init()
    assert not pki.init()  # once
    issued = pki.issue_client("gw-1", Role.GATEWAY)
    for key in (tmp_path / "ca.key", pki.key_path("gw-1")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(pki.cert_path("gw-1").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=gw-1"
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is None
    pki.revoke("gw-1")
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    with pytest.raises(PkiError, match="no live certificate"):
        pki.revoke("gw-1")


def test_cli_issues_and_writes_broker_files(tmp_path: Path) -> None:
    runner = CliRunner()
    pki_dir = str(tmp_path / "pki")
    for args in (
        ["pki", "init", "--dir", pki_dir],
        ["pki", "server", "broker", "--host", "localhost", "--dir", pki_dir],
        ["pki", "client", "gw-1", "--role", "gateway", "--dir", pki_dir],
        [
            "broker",
            "config",
            "--kind",
            "uplink",
            "--out",
            str(tmp_path / "conf"),
            "--pki-dir",
            pki_dir,
        ],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    conf = (tmp_path / "conf" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "require_certificate true" in conf
    assert "use_identity_as_username true" in conf
    assert "pattern write vigil/v1/gateways/%u/batches" in (tmp_path / "conf" / "acl").read_text()
    refused = runner.invoke(app, ["pki", "client", "a/b", "--role", "gateway", "--dir", pki_dir])
    assert refused.exit_code == 2
    assert "Traceback" not in refused.output
