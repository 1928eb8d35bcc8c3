"""Signed checkpoints of the audit chain, with an Ed25519 key held outside the database.

A hash chain alone proves nothing to someone who can rewrite the database: they can edit a row
and recompute every hash after it, cut the tail, or append a well-formed row. A checkpoint —
the chain head (seq, hash) signed with a key the database never sees, exported where the
database's owner cannot reach it (a file, an MQTT topic, a webhook) — turns that into
evidence, like a Certificate Transparency signed tree head:

- rows up to the checkpoint were rewritten (even rehashed): row ``seq`` no longer has ``head``;
- the log was truncated below the checkpoint: row ``seq`` is gone;
- rows appended after it are each signed too (``row_signature``), so a forged append made
  without the key is named.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.audit import AuditEntry, Problem, canonical_json

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint or key file that cannot be used; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The audit chain's head at one moment, signed."""

    seq: int
    head: str
    at: datetime
    key_id: str
    signature: str  # base64 Ed25519 over the canonical JSON of the other fields

    def body(self) -> dict[str, Any]:
        """The signed content."""
        return {
            "v": CHECKPOINT_VERSION,
            "seq": self.seq,
            "head": self.head,
            "at": self.at.isoformat(),
            "key_id": self.key_id,
        }

    def to_json(self) -> str:
        """The exported form."""
        return json.dumps({**self.body(), "signature": self.signature}, sort_keys=True)


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Create a signing key file readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``; refuses a key file others can read."""
    if not path.exists():
        raise CheckpointError(f"no audit signing key at {path}")
    if path.stat().st_mode & 0o077:
        raise CheckpointError(f"audit signing key {path} is readable by others: chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The public half, to hand to auditors."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(path: Path) -> Ed25519PublicKey:
    """A verification key from a PEM file (public, or the private key itself)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return load_key(path).public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path} is not an Ed25519 public key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a key: the first 16 hex digits of its raw bytes' hash."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_checkpoint(key: Ed25519PrivateKey, head: AuditEntry, at: datetime) -> Checkpoint:
    """Sign the chain head ``head``."""
    unsigned = Checkpoint(head.seq, head.hash, at.astimezone(UTC), key_id(key.public_key()), "")
    signature = key.sign(canonical_json(unsigned.body()))
    return Checkpoint(
        unsigned.seq,
        unsigned.head,
        unsigned.at,
        unsigned.key_id,
        base64.b64encode(signature).decode(),
    )


def parse_checkpoint(text: str, public: Ed25519PublicKey) -> Checkpoint:
    """A checkpoint from its exported JSON, with its signature checked."""
    try:
        doc: Mapping[str, Any] = json.loads(text)
        cp = Checkpoint(
            int(doc["seq"]),
            str(doc["head"]),
            datetime.fromisoformat(str(doc["at"])),
            str(doc["key_id"]),
            str(doc["signature"]),
        )
        if doc.get("v") != CHECKPOINT_VERSION:
            raise CheckpointError(f"unknown checkpoint version {doc.get('v')!r}")
        public.verify(base64.b64decode(cp.signature), canonical_json(cp.body()))
    except InvalidSignature:
        raise CheckpointError("checkpoint signature does not verify with this key") from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"not a checkpoint: {exc}") from None
    return cp


def row_signature(key: Ed25519PrivateKey, entry: AuditEntry) -> str:
    """A signature over one row's hash, stored beside the row."""
    return base64.b64encode(key.sign(entry.hash.encode())).decode()


def row_signed(public: Ed25519PublicKey, entry: AuditEntry, signature: str | None) -> bool:
    """Whether ``signature`` is the key's signature of ``entry``'s hash."""
    if not signature:
        return False
    try:
        public.verify(base64.b64decode(signature), entry.hash.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def against_checkpoint(
    entries: Sequence[AuditEntry],
    checkpoint: Checkpoint,
    public: Ed25519PublicKey,
    signatures: Mapping[int, str],
) -> list[Problem]:
    """What the log's rows say against a checkpoint: truncation, rewrites, forged appends."""
    problems: list[Problem] = []
    at = {e.seq: (i, e) for i, e in enumerate(entries)}
    if checkpoint.seq not in at:
        last = entries[-1].seq if entries else 0
        problems.append(
            Problem(
                len(entries),
                last,
                f"log truncated: row {checkpoint.seq} of the checkpoint is missing",
            )
        )
    else:
        index, entry = at[checkpoint.seq]
        if entry.hash != checkpoint.head:
            problems.append(
                Problem(index, entry.seq, "rewritten: row differs from the signed checkpoint")
            )
    for index, entry in enumerate(entries):
        if entry.seq > checkpoint.seq and not row_signed(public, entry, signatures.get(entry.seq)):
            problems.append(Problem(index, entry.seq, "appended without the audit signing key"))
    return problems
