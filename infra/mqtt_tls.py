"""Client-side TLS for every MQTT connection: our CA, our certificate, TLS 1.2 or later.

With the broker configured by ``vigil broker config`` a client's certificate is its identity
(the CN becomes its MQTT username), so each process presents its own certificate.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class MqttTls:
    """The files a client needs: the CA that signed the broker, and its own certificate."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None  # check the broker's certificate against this name

    def context(self) -> ssl.SSLContext:
        """A client context: verifies the broker, presents our certificate if we have one."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx


def tls_context(tls: MqttTls | None) -> ssl.SSLContext | None:
    """The context for ``tls``, or None for a plain connection."""
    return None if tls is None else tls.context()
