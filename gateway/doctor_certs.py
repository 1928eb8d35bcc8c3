"""The doctor's certificate check: every TLS file the gateway connects with is valid for a while.

An expired client certificate locks the gateway out of its broker (the outbox fills, nothing is
forwarded), and an expired CA file makes it refuse the broker; both fail silently at 3 a.m.
unless someone looked before leaving the ward.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.doctor import Check, Status


def _renew(label: str, path: Path) -> str:
    return (
        f"issue a new one on the PKI host (`vigil pki client <gateway id> --role gateway`, or"
        f" `vigil pki init` for a CA), copy it to {path} and `systemctl restart vigil-gateway`"
        f" ({label})"
    )


def check_certificate(label: str, path: Path, now: datetime, min_days: float) -> Check:
    """Every certificate in ``path`` valid now and for at least ``min_days`` more."""
    from cryptography import x509

    name = f"certificate {label}"
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        return Check(name, Status.FAIL, f"{path}: {exc.strerror or exc}", _renew(label, path))
    except ValueError:
        return Check(name, Status.FAIL, f"{path} holds no PEM certificate", _renew(label, path))
    soonest = min(certificates, key=lambda c: c.not_valid_after_utc)
    subject = soonest.subject.rfc4514_string() or "(no subject)"
    until = soonest.not_valid_after_utc
    if any(c.not_valid_before_utc > now for c in certificates):
        return Check(
            name,
            Status.FAIL,
            f"{path} is not valid yet by this box's clock ({now:%Y-%m-%d %H:%M} UTC)",
            "the clock is wrong, not the certificate: fix the clock first (see clock checks)",
        )
    left = until - now
    when = f"{subject}, valid until {until:%Y-%m-%d %H:%M} UTC"
    if left <= timedelta(0):
        return Check(name, Status.FAIL, f"{when}: EXPIRED", _renew(label, path))
    if left < timedelta(days=min_days):
        return Check(
            name,
            Status.FAIL,
            f"{when}: expires in {left.days} days (less than {min_days:g})",
            _renew(label, path),
        )
    return Check(name, Status.OK, f"{when} ({left.days} days left)")


def check_certificates(
    files: Sequence[tuple[str, Path]], min_days: float, now: datetime | None = None
) -> list[Check]:
    """Each (label, file) checked; one skipped line when the gateway uses no TLS at all."""
    if not files:
        plain = "no TLS configured: plain MQTT, nothing expires"
        return [Check("certificates", Status.SKIP, plain)]
    at = now or datetime.now(UTC)
    return [check_certificate(label, path, at, min_days) for label, path in files]
