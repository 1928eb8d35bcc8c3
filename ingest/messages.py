"""Uplink messages → the batches to store and the dead letters to keep, with why."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt

from contract import Batch, Confirmation, ContractError, TimeWindow, decode_batch
from contract.topics import UPLINK_PREFIX
from infra.consume import payload_bytes
from infra.telemetry.base import DeadLetter

_BATCHES_SUFFIX = "/batches"


@dataclass
class DecodedGroup:
    """What one group of messages holds: batches to store, dead letters, letters per kind."""

    batches: list[Batch] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    letter_kinds: Counter[str] = field(default_factory=Counter)

    def reject(self, kind: str, letter: DeadLetter) -> None:
        """Keep ``letter``, counted under ``kind``."""
        self.letters.append(letter)
        self.letter_kinds[kind] += 1


def topic_gateway(topic: str) -> str | None:
    """The gateway id a batch topic names (``vigil/v1/gateways/<id>/batches``), or None."""
    prefix = UPLINK_PREFIX + "/"
    if not (topic.startswith(prefix) and topic.endswith(_BATCHES_SUFFIX)):
        return None
    gateway = topic[len(prefix) : -len(_BATCHES_SUFFIX)]
    return gateway if gateway and "/" not in gateway else None


def topic_mismatch(topic: str, batch: Batch) -> str | None:
    """Why the batch may not come from ``topic`` (the gateway ids differ), or None."""
    named = topic_gateway(topic)
    if named is None:
        return f"topic {topic!r} is not a gateway's batch topic"
    if named != batch.gateway_id:
        return f"topic names gateway {named!r}, payload gateway {batch.gateway_id!r}"
    return None


def decode_group(
    messages: Sequence[aiomqtt.Message], now_us: int, window: TimeWindow | None = None
) -> DecodedGroup:
    """Decode every message: its batch, or a dead letter saying why it is unusable."""
    group = DecodedGroup()
    for message in messages:
        payload = payload_bytes(message)
        topic = str(message.topic)
        try:
            decoded = decode_batch(payload, window=window)
        except ContractError as exc:
            group.reject("payload", DeadLetter(now_us, topic, str(exc), payload))
            continue
        batch = decoded.batch
        # Defence in depth: a gateway may publish only its own batches (broker ACLs should
        # already say so); a batch under another gateway's name would be confirmed to, and
        # deduplicated against, the wrong gateway.
        mismatch = topic_mismatch(topic, batch)
        if mismatch is not None:
            letter = DeadLetter(now_us, topic, mismatch, payload, batch.gateway_id, batch.batch_seq)
            group.reject("topic", letter)
            continue
        group.batches.append(batch)
        for reject in decoded.rejected:
            fields = json.dumps(reject.fields).encode()
            reason = f"reading {reject.index}: {reject.reason}"
            letter = DeadLetter(now_us, topic, reason, fields, batch.gateway_id, batch.batch_seq)
            group.reject("reading", letter)
    return group


def batch_of(message: aiomqtt.Message) -> Batch | None:
    """The batch a message carries if it decodes and its topic names its gateway, else None."""
    try:
        batch = decode_batch(payload_bytes(message)).batch
    except ContractError:
        return None
    return None if topic_mismatch(str(message.topic), batch) else batch


def confirmations(batches: Sequence[Batch]) -> list[Confirmation]:
    """One confirmation per gateway listing its batches' batch_seqs."""
    seqs: dict[str, list[int]] = {}
    for batch in batches:
        seqs.setdefault(batch.gateway_id, []).append(batch.batch_seq)
    return [Confirmation.of(gateway, batch_seqs) for gateway, batch_seqs in seqs.items()]
