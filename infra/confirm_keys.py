"""Keys that authenticate delivery confirmations: one ingest master, one derived key per gateway.

Ingest holds the master secret and derives each gateway's key as
HMAC-SHA256(master, "vigil confirm key v1" NUL gateway_id); a gateway holds only its own key, so
a stolen gateway can neither confirm for another gateway nor learn the master. Key files hold
the 32 key bytes as 64 hex characters and a newline, readable by their owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
_CONTEXT = b"vigil confirm key v1\x00"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or malformed; ``str()`` names it and says why."""


def new_key() -> bytes:
    """A fresh random key."""
    return secrets.token_bytes(KEY_BYTES)


def gateway_key(master: bytes, gateway_id: str) -> bytes:
    """The confirmation key of ``gateway_id``, derived from the ingest master secret."""
    return hmac.new(master, _CONTEXT + gateway_id.encode(), hashlib.sha256).digest()


def read_key(path: Path) -> bytes:
    """The key in ``path``; KeyFileError if it cannot be read or is not 64 hex characters."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise KeyFileError(f"key file {path}: {reason or exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"key file {path}: expected {2 * KEY_BYTES} hex characters")
    return key


def write_key(path: Path, key: bytes) -> None:
    """Write ``key`` readable by its owner only, never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key.hex() + "\n")
