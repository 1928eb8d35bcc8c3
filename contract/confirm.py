"""Delivery confirmations: ingest tells a gateway which of its batches are durably stored.

Version 1 layout::

    {"v": 1, "gateway_id": "gw-1", "batch_seqs": [7, 8, 9], "mac": "<64 hex>"}

A batch_seq is listed once its batch is committed (stored now, stored earlier, or every reading
dead-lettered): only then may the gateway forget it. A broker's PUBACK is not enough, because a
broker may acknowledge before it persists. Bad payloads raise ContractError.

``mac`` is HMAC-SHA256, keyed with the gateway's own confirmation key, over the canonical
confirmation (``canonical_confirmation``: the other fields as sorted-key compact JSON, the
batch_seqs sorted and deduplicated). It is optional on the wire so that confirmations of an
ingest without a key still decode; a gateway that has a key refuses any confirmation whose MAC
is missing or wrong, so a forged confirmation cannot make it forget a batch even when a broker
ACL lets the forger publish on its confirm topic.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import ContractError, invalid

CONFIRM_VERSION = 1
# Ingest confirms at most one write's worth of batches per message; this leaves ample room.
MAX_CONFIRMED_SEQS = 10_000
MAX_CONFIRM_BYTES = 256 * 1024
_MAC_DOMAIN = b"vigil confirmation v1\n"


class _WireConfirmationV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    gateway_id: Annotated[str, Field(min_length=1, max_length=128)]
    batch_seqs: Annotated[
        list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_CONFIRMED_SEQS)
    ]
    mac: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The batches of one gateway that ingest has committed, in ascending order, no repeats.

    ``mac`` is the MAC the confirmation arrived with (None: unauthenticated).
    """

    gateway_id: str
    batch_seqs: tuple[int, ...]
    mac: str | None = None

    @classmethod
    def of(cls, gateway_id: str, batch_seqs: Iterable[int]) -> Confirmation:
        """A confirmation of ``batch_seqs``, sorted and deduplicated."""
        return cls(gateway_id, tuple(sorted(set(batch_seqs))))


def canonical_confirmation(confirmation: Confirmation) -> bytes:
    """The bytes the MAC covers: version, gateway and sorted unique batch_seqs, no MAC."""
    doc = {
        "v": CONFIRM_VERSION,
        "gateway_id": confirmation.gateway_id,
        "batch_seqs": sorted(set(confirmation.batch_seqs)),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def confirmation_mac(confirmation: Confirmation, key: bytes) -> str:
    """The hex HMAC-SHA256 of ``confirmation`` under the gateway's ``key``."""
    message = _MAC_DOMAIN + canonical_confirmation(confirmation)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def authentic(confirmation: Confirmation, key: bytes) -> bool:
    """Whether ``confirmation`` carries the right MAC under ``key`` (a missing one is not)."""
    if confirmation.mac is None:
        return False
    return hmac.compare_digest(confirmation.mac, confirmation_mac(confirmation, key))


def encode_confirmation(confirmation: Confirmation, key: bytes | None = None) -> bytes:
    """Serialise in the current version, with a MAC under ``key`` if one is given.

    ContractError if it could not be decoded back.
    """
    if not confirmation.batch_seqs:
        raise ContractError("a confirmation lists at least one batch_seq")
    doc: dict[str, object] = {
        "v": CONFIRM_VERSION,
        "gateway_id": confirmation.gateway_id,
        "batch_seqs": list(confirmation.batch_seqs),
    }
    if key is not None:
        doc["mac"] = confirmation_mac(confirmation, key)
    payload = json.dumps(doc, separators=(",", ":")).encode()
    decode_confirmation(payload)  # the same checks on both ends: never send what we'd reject
    return payload


def decode_confirmation(payload: bytes) -> Confirmation:
    """Parse and validate a confirmation; raise ContractError if it is unusable.

    The MAC is returned, not checked: only the gateway knows its key (``authentic``).
    """
    if len(payload) > MAX_CONFIRM_BYTES:
        raise ContractError(f"confirmation of {len(payload)} bytes exceeds {MAX_CONFIRM_BYTES}")
    try:
        wire = _WireConfirmationV1.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("confirmation", exc) from None
    return replace(Confirmation.of(wire.gateway_id, wire.batch_seqs), mac=wire.mac)


def split_confirmation(confirmation: Confirmation) -> list[Confirmation]:
    """Cut a confirmation into pieces that each fit one message (each is MACed on its own)."""
    seqs = confirmation.batch_seqs
    return [
        Confirmation(confirmation.gateway_id, seqs[i : i + MAX_CONFIRMED_SEQS])
        for i in range(0, len(seqs), MAX_CONFIRMED_SEQS)
    ]
