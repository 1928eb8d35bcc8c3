"""Delivery confirmations: ingest tells a gateway which of its batches are durably stored.

Version 1 layout::

    {"v": 1, "gateway_id": "gw-1", "batch_seqs": [7, 8, 9]}

A batch_seq is listed once its batch is committed (stored now, stored earlier, or every reading
dead-lettered): only then may the gateway forget it. A broker's PUBACK is not enough, because a
broker may acknowledge before it persists. Bad payloads raise ContractError.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import ContractError, invalid

CONFIRM_VERSION = 1
# Ingest confirms at most one write's worth of batches per message; this leaves ample room.
MAX_CONFIRMED_SEQS = 10_000
MAX_CONFIRM_BYTES = 256 * 1024


class _WireConfirmationV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    gateway_id: Annotated[str, Field(min_length=1, max_length=128)]
    batch_seqs: Annotated[
        list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_CONFIRMED_SEQS)
    ]


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The batches of one gateway that ingest has committed, in ascending order, no repeats."""

    gateway_id: str
    batch_seqs: tuple[int, ...]

    @classmethod
    def of(cls, gateway_id: str, batch_seqs: Iterable[int]) -> Confirmation:
        """A confirmation of ``batch_seqs``, sorted and deduplicated."""
        return cls(gateway_id, tuple(sorted(set(batch_seqs))))


def encode_confirmation(confirmation: Confirmation) -> bytes:
    """Serialise in the current version; ContractError if it could not be decoded back."""
    if not confirmation.batch_seqs:
        raise ContractError("a confirmation lists at least one batch_seq")
    doc = {
        "v": CONFIRM_VERSION,
        "gateway_id": confirmation.gateway_id,
        "batch_seqs": list(confirmation.batch_seqs),
    }
    payload = json.dumps(doc, separators=(",", ":")).encode()
    decode_confirmation(payload)  # the same checks on both ends: never send what we'd reject
    return payload


def decode_confirmation(payload: bytes) -> Confirmation:
    """Parse and validate a confirmation; raise ContractError if it is unusable."""
    if len(payload) > MAX_CONFIRM_BYTES:
        raise ContractError(f"confirmation of {len(payload)} bytes exceeds {MAX_CONFIRM_BYTES}")
    try:
        wire = _WireConfirmationV1.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("confirmation", exc) from None
    return Confirmation.of(wire.gateway_id, wire.batch_seqs)


def split_confirmation(confirmation: Confirmation) -> list[Confirmation]:
    """Cut a confirmation into pieces that each fit one message."""
    seqs = confirmation.batch_seqs
    return [
        Confirmation(confirmation.gateway_id, seqs[i : i + MAX_CONFIRMED_SEQS])
        for i in range(0, len(seqs), MAX_CONFIRMED_SEQS)
    ]
