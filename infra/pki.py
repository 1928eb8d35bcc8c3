"""A small project PKI: one CA, a broker certificate, one client certificate per identity, a CRL.

The broker (Mosquitto with ``require_certificate`` and ``use_identity_as_username``) takes a
client's identity from its certificate's common name, so the CN *is* the MQTT username its ACL
patterns see: a gateway's CN is its gateway id, a piece of equipment's its device id, and the
server processes use the reserved names in ``SERVICE_IDENTITIES``.

Layout of a PKI directory::

    ca.crt  ca.key  crl.pem  index.json  confirm-master.key
    issued/<cn>.crt  issued/<cn>.key  issued/<gateway>.confirm-key

Keys are written 0600; ``index.json`` records every issued serial and whether it was revoked,
and the CRL is re-signed from it on every revocation. ``confirm-master.key`` is ingest's master
secret for confirmation MACs; each gateway's ``.confirm-key`` is derived from it
(``infra.confirm_keys``) when its certificate is issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.confirm_keys import gateway_key, new_key, read_key, write_key

SERVICE_IDENTITIES = ("vigil-ingest", "vigil-rules", "vigil-service", "vigil-api")
# An identity becomes an MQTT topic level: no wildcards, separators or control characters.
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CA_DAYS = 3650
LEAF_DAYS = 825  # the CA/Browser Forum's old ceiling; rotate well before (docs/security.md)
CRL_DAYS = 30


class PkiError(ValueError):
    """A PKI request that cannot be carried out; ``str()`` says why."""


class Role(StrEnum):
    """What a client certificate is for; decides the name rules and the broker's ACL."""

    GATEWAY = "gateway"
    EQUIPMENT = "equipment"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Issued:
    """One certificate the CA issued, as recorded in ``index.json``."""

    cn: str
    role: str
    serial: int
    not_after: str  # ISO 8601, UTC
    revoked_at: str | None = None


def check_identity(cn: str, role: Role) -> None:
    """Raise PkiError unless ``cn`` is a valid identity for ``role``."""
    if not _IDENTITY.fullmatch(cn):
        raise PkiError(
            f"identity {cn!r} must be 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    reserved = cn.startswith("vigil-")
    if role is Role.SERVICE and cn not in SERVICE_IDENTITIES:
        raise PkiError(f"service identity must be one of {', '.join(SERVICE_IDENTITIES)}")
    if role is not Role.SERVICE and reserved:
        raise PkiError(f"identity {cn!r}: names starting with 'vigil-' are reserved for services")


class Pki:
    """A PKI directory; ``Pki(path).init()`` creates the CA once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_cert_path(self) -> Path:
        """The CA certificate every client and broker trusts."""
        return self.root / "ca.crt"

    @property
    def crl_path(self) -> Path:
        """The current certificate revocation list (PEM)."""
        return self.root / "crl.pem"

    def cert_path(self, cn: str) -> Path:
        """Where the certificate of ``cn`` is."""
        return self.root / "issued" / f"{cn}.crt"

    def key_path(self, cn: str) -> Path:
        """Where the private key of ``cn`` is."""
        return self.root / "issued" / f"{cn}.key"

    @property
    def confirm_master_path(self) -> Path:
        """Ingest's master secret for confirmation MACs (``[ingest] confirm_key_file``)."""
        return self.root / "confirm-master.key"

    def confirm_key_path(self, gateway_id: str) -> Path:
        """Where the confirmation key of ``gateway_id`` is (``[gateway] confirm_key_file``)."""
        return self.root / "issued" / f"{gateway_id}.confirm-key"

    def init(self, name: str = "vigil project CA") -> bool:
        """Create the CA (and the confirmation master secret) if absent; True if created now."""
        (self.root / "issued").mkdir(parents=True, exist_ok=True)
        if not self.confirm_master_path.exists():
            write_key(self.confirm_master_path, new_key())
        if self.ca_cert_path.exists():
            return False
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_key(self.root / "ca.key", key)
        self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._save_index([])
        self.write_crl()
        return True

    def issue_server(self, cn: str, hosts: list[str], days: int = LEAF_DAYS) -> Issued:
        """A broker (TLS server) certificate valid for ``hosts`` (DNS names or IP addresses)."""
        if not hosts:
            raise PkiError("a server certificate needs at least one host name or address")
        sans = [_san(h) for h in hosts]
        return self._issue(cn, "server", ExtendedKeyUsageOID.SERVER_AUTH, sans, days)

    def issue_client(self, cn: str, role: Role, days: int = LEAF_DAYS) -> Issued:
        """A client certificate whose CN is the identity the broker will see.

        A gateway also gets its confirmation key, derived from the master secret.
        """
        check_identity(cn, role)
        issued = self._issue(cn, str(role), ExtendedKeyUsageOID.CLIENT_AUTH, [], days)
        if role is Role.GATEWAY:
            self.write_confirm_key(cn)
        return issued

    def write_confirm_key(self, gateway_id: str) -> Path:
        """Derive and write the confirmation key of ``gateway_id``; its path."""
        if not self.confirm_master_path.exists():
            write_key(self.confirm_master_path, new_key())  # a PKI from before the MACs
        path = self.confirm_key_path(gateway_id)
        write_key(path, gateway_key(read_key(self.confirm_master_path), gateway_id))
        return path

    def revoke(self, cn: str) -> Issued:
        """Revoke the current certificate of ``cn`` and re-sign the CRL."""
        index = self._load_index()
        live = [i for i in index if i.cn == cn and i.revoked_at is None]
        if not live:
            raise PkiError(f"no live certificate for {cn!r}")
        revoked_at = _now().isoformat()
        index = [
            Issued(i.cn, i.role, i.serial, i.not_after, revoked_at) if i in live else i
            for i in index
        ]
        self._save_index(index)
        self.write_crl()
        return Issued(live[-1].cn, live[-1].role, live[-1].serial, live[-1].not_after, revoked_at)

    def issued(self) -> list[Issued]:
        """Every certificate issued, oldest first."""
        return self._load_index()

    def write_crl(self) -> None:
        """Sign a fresh CRL listing every revoked serial."""
        ca_key, ca_cert = self._ca()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for item in self._load_index():
            if item.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(item.serial)
                    .revocation_date(dt.datetime.fromisoformat(item.revoked_at))
                    .build()
                )
        crl = builder.sign(ca_key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    def _issue(
        self,
        cn: str,
        role: str,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName],
        days: int,
    ) -> Issued:
        ca_key, ca_cert = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(self.key_path(cn), key)
        self.cert_path(cn).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued = Issued(cn, role, cert.serial_number, cert.not_valid_after_utc.isoformat())
        self._save_index([*self._load_index(), issued])
        return issued

    def _ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if not self.ca_cert_path.exists():
            raise PkiError(f"no CA in {self.root}: run `vigil pki init` first")
        key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("the CA key is not an EC key")
        return key, x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def _load_index(self) -> list[Issued]:
        path = self.root / "index.json"
        if not path.exists():
            return []
        return [Issued(**item) for item in json.loads(path.read_text())]

    def _save_index(self, items: list[Issued]) -> None:
        path = self.root / "index.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(i) for i in items], indent=1))
        tmp.replace(path)


def certificate_expiry(path: Path) -> dt.datetime:
    """When the certificate at ``path`` stops being valid (UTC)."""
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key readable by its owner only, never briefly world-readable."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
