"""The doctor's clock-offset, certificate, site-broker and disk checks, each failure with its fix.

The clock offset is measured against a real SNTP server on loopback (a small one written here,
answering as RFC 4330 servers do, with a chosen error); certificates are real X.509 files made
with ``cryptography``; brokers are a private Mosquitto and a port where nothing listens.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from gateway.doctor import Check, DoctorInputs, Status, check_broker, check_disk, examine
from gateway.doctor_certs import check_certificate, check_certificates
from gateway.doctor_clock import check_clock_offset, from_ntp, to_ntp
from tests.servers import PrivateMosquitto, free_port
from vigil.cli import app

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class SntpServer:
    """Answers SNTP requests on loopback with its clock ``offset_s`` off ours (or misbehaves)."""

    def __init__(self, offset_s: float = 0.0, mode: str = "good") -> None:
        self.offset_s = offset_s
        self.mode = mode  # good | kiss | foreign (answers another request) | silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.requests += 1
            if self.mode == "silent":
                continue
            received = to_ntp(time.time() + self.offset_s)
            originate = request[40:48] if self.mode != "foreign" else to_ntp(12345.0)
            stratum = 0 if self.mode == "kiss" else 2
            header = struct.pack("!BBbb", 0x24, stratum, 6, -20) + bytes(8)
            refid = b"RATE" if self.mode == "kiss" else b"LOCL"
            reply = header + refid + received + originate + received
            self.sock.sendto(reply + to_ntp(time.time() + self.offset_s), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def sntp() -> Iterator[list[SntpServer]]:
    servers: list[SntpServer] = []
    yield servers
    for server in servers:
        server.close()


def test_ntp_timestamps_round_trip() -> None:
    for unix in (0.0, 1_767_225_600.25, 2_000_000_000.999):
        assert abs(from_ntp(to_ntp(unix)) - unix) < 1e-6


async def test_a_clock_in_step_with_the_backbones_passes(sntp: list[SntpServer]) -> None:
    sntp.append(server := SntpServer(offset_s=0.0))
    check = await check_clock_offset("127.0.0.1", 1.0, port=server.port)
    assert check.status is Status.OK, check
    assert "round trip" in check.detail and server.requests == 1


@pytest.mark.parametrize("offset_s, word", [(30.0, "behind"), (-7.5, "ahead of")])
async def test_a_clock_off_the_backbones_fails_with_its_fix(
    sntp: list[SntpServer], offset_s: float, word: str
) -> None:
    sntp.append(server := SntpServer(offset_s=offset_s))
    check = await check_clock_offset("127.0.0.1", 1.0, port=server.port)
    assert check.status is Status.FAIL
    assert word in check.detail and f"{int(abs(offset_s))}." in check.detail
    assert "timedatectl" in check.fix and "timesyncd.conf" in check.fix


@pytest.mark.parametrize(
    "mode, reason",
    [("kiss", "kiss code 'RATE'"), ("foreign", "not to our request"), ("silent", "no answer")],
)
async def test_an_unusable_ntp_answer_fails_with_its_fix(
    sntp: list[SntpServer], mode: str, reason: str
) -> None:
    sntp.append(server := SntpServer(mode=mode))
    check = await check_clock_offset("127.0.0.1", 1.0, port=server.port, timeout_s=0.5)
    assert check.status is Status.FAIL
    assert reason in check.detail
    assert "--ntp-server" in check.fix


async def test_no_ntp_server_listening_fails_and_none_configured_is_skipped() -> None:
    closed = await check_clock_offset("127.0.0.1", 1.0, port=free_port(), timeout_s=0.5)
    assert closed.status is Status.FAIL and "UDP" in closed.fix
    skipped = await check_clock_offset(None, 1.0)
    assert skipped.status is Status.SKIP


# --- certificates ---------------------------------------------------------------------------


def make_certificate(path: Path, not_before: datetime, not_after: datetime, cn: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_certificate_valid_for_a_year_passes(tmp_path: Path) -> None:
    cert = make_certificate(
        tmp_path / "gw.crt", NOW - timedelta(days=1), NOW + timedelta(days=365), "gw-1"
    )
    check = check_certificate("uplink client", cert, NOW, 30)
    assert check.status is Status.OK and "CN=gw-1" in check.detail and "365 days" in check.detail


def test_an_expired_certificate_fails_with_how_to_renew_it(tmp_path: Path) -> None:
    cert = make_certificate(
        tmp_path / "gw.crt", NOW - timedelta(days=400), NOW - timedelta(days=35), "gw-1"
    )
    check = check_certificate("uplink client", cert, NOW, 30)
    assert check.status is Status.FAIL and "EXPIRED" in check.detail
    assert "vigil pki client" in check.fix and str(cert) in check.fix


def test_a_certificate_expiring_soon_fails(tmp_path: Path) -> None:
    cert = make_certificate(
        tmp_path / "ca.crt", NOW - timedelta(days=300), NOW + timedelta(days=9, hours=1), "ca"
    )
    check = check_certificate("uplink CA", cert, NOW, 30)
    assert check.status is Status.FAIL and "expires in 9 days" in check.detail


def test_a_bundle_is_judged_by_its_soonest_certificate(tmp_path: Path) -> None:
    good = make_certificate(
        tmp_path / "a.crt", NOW - timedelta(days=1), NOW + timedelta(days=900), "a"
    )
    old = make_certificate(
        tmp_path / "b.crt", NOW - timedelta(days=900), NOW - timedelta(days=1), "b"
    )
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(good.read_bytes() + old.read_bytes())
    check = check_certificate("uplink CA", bundle, NOW, 30)
    assert check.status is Status.FAIL and "CN=b" in check.detail


def test_a_certificate_from_the_future_blames_the_clock(tmp_path: Path) -> None:
    cert = make_certificate(
        tmp_path / "gw.crt", NOW + timedelta(days=2), NOW + timedelta(days=400), "gw-1"
    )
    check = check_certificate("uplink client", cert, NOW, 30)
    assert check.status is Status.FAIL and "not valid yet" in check.detail and "clock" in check.fix


def test_a_missing_or_broken_file_fails_and_no_tls_is_skipped(tmp_path: Path) -> None:
    missing = check_certificate("site CA", tmp_path / "absent.crt", NOW, 30)
    assert missing.status is Status.FAIL and "No such file" in missing.detail
    (tmp_path / "junk.crt").write_text("not a certificate")
    junk = check_certificate("site CA", tmp_path / "junk.crt", NOW, 30)
    assert junk.status is Status.FAIL and "no PEM certificate" in junk.detail
    assert [c.status for c in check_certificates([], 30)] == [Status.SKIP]


# --- brokers, disk and the whole command ------------------------------------------------------


async def test_an_unreachable_site_broker_fails_naming_its_settings() -> None:
    where = "[site_broker] host and port (VIGIL_SITE_BROKER__HOST/__PORT)"
    check = await check_broker("127.0.0.1", free_port(), 2.0, None, "site broker", where)
    assert check.status is Status.FAIL and check.name == "site broker"
    assert "VIGIL_SITE_BROKER__HOST" in check.fix and "mosquitto_sub" in check.fix


def test_a_nearly_full_disk_fails_by_a_tiny_margin(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    assert check_disk(tmp_path / "outbox.db", free // 2).status is Status.OK
    # Needing a few MB more than is free is what a full disk looks like to the outbox.
    short = check_disk(tmp_path / "outbox.db", free + 50_000_000)
    assert short.status is Status.FAIL and "free" in short.fix


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_a_healthy_box_passes_every_check_that_runs_here(
    tmp_path: Path, mosquitto: PrivateMosquitto, sntp: list[SntpServer]
) -> None:
    sntp.append(server := SntpServer())
    cert = make_certificate(
        tmp_path / "gw.crt", NOW - timedelta(days=1), datetime.now(UTC) + timedelta(days=365), "gw"
    )
    inputs = DoctorInputs(
        outbox_path=tmp_path / "outbox.db",
        outbox_bytes=1_000_000,
        broker_host="127.0.0.1",
        broker_port=mosquitto.port,
        bus_present=False,
        site_broker=("127.0.0.1", mosquitto.port, None),
        ntp_server="127.0.0.1",
        ntp_port=server.port,
        certificates=[("uplink client", cert)],
    )
    checks = by_name(await examine(inputs))
    for name in ("outbox disk headroom", "uplink broker", "site broker", "clock offset"):
        assert checks[name].status is Status.OK, checks[name]
    assert checks["certificate uplink client"].status is Status.OK
    assert checks["BlueZ / D-Bus"].status is Status.SKIP


def test_the_command_reports_expired_certificates_and_a_full_disk(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = make_certificate(
        tmp_path / "ca.crt", now - timedelta(days=800), now - timedelta(days=1), "ca"
    )
    env = {
        "COLUMNS": "200",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "VIGIL_GATEWAY__OUTBOX_MAX_READINGS": str(10**15),  # more than any disk holds
        "VIGIL_UPLINK_BROKER__PORT": str(free_port()),
        "VIGIL_UPLINK_BROKER__TLS_CA_FILE": str(ca),
        "VIGIL_SITE_BROKER__PORT": str(free_port()),
    }
    result = CliRunner().invoke(app, ["gateway", "doctor", "--listen-s", "0"], env=env)
    assert result.exit_code == 1, result.output
    out = result.output
    for line in (
        "FAIL outbox disk headroom",
        "FAIL uplink broker",
        "FAIL site broker",
        "FAIL clock offset",
        "FAIL certificate uplink CA",
    ):
        assert line in out, out
    assert "EXPIRED" in out and out.count("fix:") >= 5


def test_ntp_servers_are_read_with_or_without_a_port() -> None:
    from gateway.doctor_clock import ntp_server

    assert ntp_server("broker.example") == ("broker.example", 123)
    assert ntp_server("127.0.0.1:1123") == ("127.0.0.1", 1123)
    assert ntp_server("[::1]:1123") == ("::1", 1123)
    assert ntp_server("[::1]") == ("::1", 123)
    assert ntp_server("fe80::1") == ("fe80::1", 123)


@pytest.mark.services  # starts its own TLS Mosquitto
def test_the_command_probes_a_tls_broker_as_the_gateway_and_checks_its_certificates(
    tmp_path: Path, sntp: list[SntpServer]
) -> None:
    from infra.pki import Role
    from tests.security.tls_broker import start_tls_broker

    tls = start_tls_broker()
    try:
        tls.pki.issue_client("gw-a", Role.GATEWAY)
        sntp.append(server := SntpServer())
        env = {
            "COLUMNS": "240",
            "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
            "VIGIL_GATEWAY__ID": "gw-a",
            "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
            "VIGIL_GATEWAY__BRIDGE_EQUIPMENT": "false",
            "VIGIL_UPLINK_BROKER__HOST": "localhost",
            "VIGIL_UPLINK_BROKER__PORT": str(tls.port),
            "VIGIL_UPLINK_BROKER__TLS_CA_FILE": str(tls.pki.ca_cert_path),
            "VIGIL_UPLINK_BROKER__TLS_CERT_FILE": str(tls.pki.cert_path("gw-a")),
            "VIGIL_UPLINK_BROKER__TLS_KEY_FILE": str(tls.pki.key_path("gw-a")),
        }
        args = ["gateway", "doctor", "--listen-s", "0", "--ntp-server", f"127.0.0.1:{server.port}"]
        result = CliRunner().invoke(app, args, env=env)
    finally:
        tls.broker.cleanup()
    out = result.output
    for line in (
        "ok uplink broker",
        "ok clock offset",
        "ok certificate uplink CA",
        "ok certificate uplink client",
    ):
        assert line in out, out
    assert "CN=gw-a" in out and "site broker" not in out


async def test_tls_files_that_cannot_be_used_fail_the_broker_check_without_a_plain_probe(
    tmp_path: Path,
) -> None:
    from gateway.doctor import tls_inputs
    from infra.mqtt_tls import MqttTls

    now = datetime.now(UTC)
    cert = make_certificate(
        tmp_path / "gw.crt", now - timedelta(days=1), now + timedelta(days=99), "gw"
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "other.key"
    key.write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context, files = tls_inputs(MqttTls(cert, cert, key), "uplink")
    assert isinstance(context, str) and files == [("uplink CA", cert), ("uplink client", cert)]
    check = await check_broker("127.0.0.1", free_port(), 2.0, context)
    assert check.status is Status.FAIL and "not tried" in check.detail
    assert "the key must be the certificate's" in check.fix
    # The certificate itself is fine, and says so: the broker line names the real problem.
    assert check_certificate("uplink client", cert, now, 30).status is Status.OK
