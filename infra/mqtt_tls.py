"""Client-side TLS for every MQTT connection: our CA, our certificate, TLS 1.2 or later.

With the broker configured by ``vigil broker config`` a client's certificate is its identity
(the CN becomes its MQTT username), so each process presents its own certificate.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


class TlsFilesError(ValueError):
    """A TLS file is missing, unreadable or unusable; ``str()`` names it and says why."""


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

    def check(self) -> ssl.SSLContext:
        """The context, or TlsFilesError naming the file that is missing, unreadable or bad.

        Called at start-up, so a misconfigured process stops with one clear line instead of
        retrying a connection that can never succeed.
        """
        files = (("CA file", self.ca), ("certificate file", self.cert), ("key file", self.key))
        for what, path in files:
            if path is None:
                continue
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise TlsFilesError(f"TLS {what} {path}: {exc.strerror or exc}") from None
        try:
            return self.context()
        except (ssl.SSLError, ValueError) as exc:
            named = ", ".join(f"{what} {path}" for what, path in files if path is not None)
            reason = getattr(exc, "reason", None) or exc
            raise TlsFilesError(f"TLS files unusable ({named}): {reason}") from None


def tls_context(tls: MqttTls | None) -> ssl.SSLContext | None:
    """The context for ``tls``, or None for a plain connection."""
    return None if tls is None else tls.context()
