"""A private Mosquitto with the generated TLS listener and ACL file, and clients for it."""

from __future__ import annotations

import contextlib
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from infra.pki import Pki
from tests.servers import PrivateMosquitto
from vigil.broker_config import BrokerOptions, ListenerFiles, broker_config, site_acl, uplink_acl


@dataclass
class TlsBroker:
    """A running broker, the PKI that signed its certificates, and its port."""

    broker: PrivateMosquitto
    pki: Pki

    @property
    def port(self) -> int:
        """The TLS listener's port."""
        return self.broker.port

    def context(self, cn: str | None, pki: Pki | None = None) -> ssl.SSLContext:
        """A client TLS context trusting our CA, presenting ``cn``'s certificate if given."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert_path))
        if cn is not None:
            issuer = pki or self.pki
            ctx.load_cert_chain(str(issuer.cert_path(cn)), str(issuer.key_path(cn)))
        return ctx


# An ACL gone wrong: every identity may read and write everything.
PERMISSIVE_ACL = "pattern readwrite #\n"


def start_tls_broker(
    *, kind: str = "uplink", site: str = "site-a", acl_text: str | None = None
) -> TlsBroker:
    """Create a PKI and start a TLS broker with the generated config (or ``acl_text``).

    The PKI lives in the broker's own work dir: mosquitto, dropped to its own user, could not
    traverse pytest's private tmp_path.
    """
    broker = PrivateMosquitto()
    pki = Pki(broker.dir / "pki")
    pki.init()
    pki.issue_server("broker", ["localhost", "127.0.0.1"])
    acl = broker.dir / "acl"
    generated = uplink_acl() if kind == "uplink" else site_acl(site, ["gw-a"])
    acl.write_text(generated if acl_text is None else acl_text)
    files = ListenerFiles(
        ca=pki.ca_cert_path,
        cert=pki.cert_path("broker"),
        key=pki.key_path("broker"),
        crl=pki.crl_path,
    )
    options = BrokerOptions(
        port=broker.port,
        bind="127.0.0.1",
        persistence_dir=broker.dir,
        log_file=broker.dir / "mosquitto.log",
    )
    broker.conf.write_text(broker_config(files, acl, options))
    _readable_by_broker(pki.root, broker.dir)
    broker.start()
    return TlsBroker(broker, pki)


def _readable_by_broker(*paths: Path) -> None:
    """Started as root, mosquitto drops to its own user: let it read the key and the CRL."""
    for path in paths:
        with contextlib.suppress(LookupError, PermissionError):
            for item in [path, *path.rglob("*")]:
                shutil.chown(item, "mosquitto")


def client(tls: TlsBroker, ctx: ssl.SSLContext, client_id: str) -> aiomqtt.Client:
    """An MQTT 5 client for the TLS broker (connects on ``async with``)."""
    return aiomqtt.Client(
        "localhost",
        tls.port,
        identifier=client_id,
        tls_context=ctx,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )
