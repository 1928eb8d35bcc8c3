"""Uplink messages → the batches to store and the dead letters to keep, with why.

Identity is bound to data twice: a batch must come from its own gateway's topic (the broker
proved the publisher's identity), and, given an installed base, every device in it must be
registered to that gateway's site; a reading of any other device is dead-lettered alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt
import numpy as np

from contract import Batch, Confirmation, ContractError, TimeWindow, decode_batch
from contract.batch_columns import ColumnarBatch, ReadingColumns
from contract.topics import UPLINK_PREFIX
from infra.consume import payload_bytes
from infra.installed_base import InstalledBase
from infra.telemetry.base import DeadLetter

_BATCHES_SUFFIX = "/batches"


@dataclass
class DecodedGroup:
    """What one group of messages holds: batches to store, dead letters, letters per kind."""

    batches: list[Batch] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    letter_kinds: Counter[str] = field(default_factory=Counter)
    # Readings of devices a gateway may not report, per gateway, and one reason for each.
    unregistered: Counter[str] = field(default_factory=Counter)
    unregistered_reason: dict[str, str] = field(default_factory=dict)

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
    messages: Sequence[aiomqtt.Message],
    now_us: int,
    window: TimeWindow | None = None,
    installed: InstalledBase | None = None,
) -> DecodedGroup:
    """Decode every message: its batch, or a dead letter saying why it is unusable.

    With ``installed``, readings of devices the gateway may not report leave the batch as dead
    letters (the rest of it is stored).
    """
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
        if installed is not None:
            batch = _registered_only(batch, installed, topic, now_us, group)
        group.batches.append(batch)
        for reject in decoded.rejected:
            fields = json.dumps(reject.fields).encode()
            reason = f"reading {reject.index}: {reject.reason}"
            letter = DeadLetter(now_us, topic, reason, fields, batch.gateway_id, batch.batch_seq)
            group.reject("reading", letter)
    return group


def _registered_only(
    batch: Batch, installed: InstalledBase, topic: str, now_us: int, group: DecodedGroup
) -> Batch:
    """``batch`` without the readings its gateway may not report; those become dead letters.

    Judged once per distinct device of the batch, then applied to its readings as a column.
    """
    gateway = batch.gateway_id
    columns = (
        batch.columns if isinstance(batch, ColumnarBatch) else ReadingColumns.of(batch.readings)
    )
    verdicts = [installed.problem(gateway, d) for d in columns.device_ids]
    if all(v is None for v in verdicts):
        return batch
    refused_device = np.array([v is not None for v in verdicts], dtype=np.bool_)
    refused = refused_device[columns.device]
    rows = np.flatnonzero(refused).tolist()
    first = ""
    for index in rows:
        reading = columns.reading(index)
        reason = verdicts[int(columns.device[index])]
        assert reason is not None
        first = first or reason
        fields = json.dumps(reading._asdict(), default=repr).encode()
        letter = DeadLetter(now_us, topic, reason, fields, gateway, batch.batch_seq)
        group.reject("unregistered", letter)
    group.unregistered[gateway] += len(rows)
    group.unregistered_reason.setdefault(gateway, first)
    return ColumnarBatch(gateway, batch.batch_seq, columns.take(~refused))


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
