"""API tokens: minted once, stored only as argon2id hashes, listed without secrets, revocable.

A token reads ``vgl_<id>_<secret>``: the id (public, 12 hex digits) finds the record, the
secret (256 random bits) is checked against its argon2id hash. Anything not of that exact shape
is refused before any hashing, so an attacker cannot make the API hash megabytes. Tokens are
random, not passwords, so argon2 runs with the RFC 9106 low-memory profile; a verified token is
remembered (by its SHA-256, never in clear) for ``cache_s`` so requests do not each pay the KDF,
while expiry and revocation are re-read from the file on every call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

ROLES = ("admin", "engineer", "hospital", "patient")
_TOKEN = re.compile(r"vgl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


class TokenError(ValueError):
    """A token request that cannot be carried out; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One minted token, as stored: never the secret, only its hash."""

    id: str
    role: str
    subject: str | None
    hash: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    note: str = ""

    def live(self, now: datetime) -> bool:
        """Whether the token may be used at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or datetime.fromisoformat(self.expires_at) > now


class TokenRegistry:
    """The token file; safe to share between threads; picks up changes made by the CLI."""

    def __init__(self, path: Path, cache_s: float = 60.0) -> None:
        self.path = path
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._mtime_ns = -1
        self._records: dict[str, TokenRecord] = {}
        self._verified: dict[str, tuple[str, float]] = {}  # sha256(token) → (id, when)

    def exists(self) -> bool:
        """Whether the token file is there at all."""
        return self.path.exists()

    def mint(
        self,
        role: str,
        subject: str | None,
        expires_at: datetime | None = None,
        note: str = "",
    ) -> tuple[str, TokenRecord]:
        """A new token (returned once, in clear) and its stored record."""
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}")
        if role != "admin" and not subject:
            raise TokenError(f"a {role} token needs --subject (the {role}'s id)")
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise TokenError("expiry must be in the future")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            role=role,
            subject=subject,
            hash=_HASHER.hash(secret),
            created_at=datetime.now(UTC).isoformat(),
            expires_at=expires_at.astimezone(UTC).isoformat() if expires_at else None,
            note=note,
        )
        with self._lock:
            records = self._load()
            records[token_id] = record
            self._save(records)
        return f"vgl_{token_id}_{secret}", record

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke one token by its id."""
        with self._lock:
            records = self._load()
            if token_id not in records:
                raise TokenError(f"no token with id {token_id!r}")
            records[token_id] = replace(records[token_id], revoked_at=datetime.now(UTC).isoformat())
            self._save(records)
            self._verified = {k: v for k, v in self._verified.items() if v[0] != token_id}
            return records[token_id]

    def records(self) -> list[TokenRecord]:
        """Every token record, oldest first."""
        with self._lock:
            return sorted(self._load().values(), key=lambda r: r.created_at)

    def lookup(self, token: str) -> TokenRecord | None:
        """The live record ``token`` proves, or None (malformed, unknown, wrong, expired)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            record = self._load().get(token_id)
            if record is None or not record.live(datetime.now(UTC)):
                return None
            cached = self._verified.get(digest)
            if cached and cached[0] == token_id and time.monotonic() - cached[1] < self.cache_s:
                return record
        try:
            _HASHER.verify(record.hash, secret)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            self._verified[digest] = (token_id, time.monotonic())
        return record

    def _load(self) -> dict[str, TokenRecord]:
        """The records, re-read when the file changed; call with the lock held."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime != self._mtime_ns:
            doc = json.loads(self.path.read_text())
            self._records = {r["id"]: TokenRecord(**r) for r in doc.get("tokens", [])}
            self._mtime_ns = mtime
        return dict(self._records)

    def _save(self, records: dict[str, TokenRecord]) -> None:
        """Write atomically, readable by the owner only; call with the lock held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"tokens": [asdict(r) for r in records.values()]}, out, indent=1)
        tmp.replace(self.path)
        self._records = records
        self._mtime_ns = self.path.stat().st_mtime_ns
