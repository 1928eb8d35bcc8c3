"""The message MQTT-reporting equipment publishes on its site broker, and its decoding.

A message carries several metrics of one device at one instant. What makes the whole message
unusable (not JSON, wrong schema, a bad id, seq or timestamp, a topic naming another device)
raises ContractError; a metric that is unknown, not of the device's kind or out of range
rejects only that reading, and the others are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from contract.catalog import METRICS, DeviceKind, kind_metric_problem
from contract.errors import ContractError, invalid, printable
from contract.reading import Reading, RejectedReading, reading_problem
from contract.topics import device_id_from_equipment_topic
from contract.validation import TimeWindow, check_ts, id_problem, int64_problem, ts_problem

MAX_EQUIPMENT_PAYLOAD_BYTES = 64 * 1024  # a message of every metric is well under 1 KiB
MAX_METRICS = 64


def _device_id(value: str) -> str:
    if problem := id_problem("device_id", value):
        raise ValueError(problem)
    return value


def _seq(value: int) -> int:
    if problem := int64_problem("seq", value):
        raise ValueError(problem)
    return value


def _ts_us(value: int) -> int:
    if problem := ts_problem(value):
        raise ValueError(problem)
    return value


def _metrics(value: dict[str, float]) -> dict[str, float]:
    if not value:
        raise ValueError("metrics is empty: a message carries at least one metric")
    if len(value) > MAX_METRICS:
        raise ValueError(f"{len(value)} metrics exceed {MAX_METRICS}")
    return value


class EquipmentMessage(BaseModel):
    """One telemetry message from a piece of equipment: several metrics at one instant.

    Strict: a number in a string, a boolean or ``15.0`` for an integer is refused, never
    coerced. ``ts_us`` is microseconds since the Unix epoch, UTC.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    device_id: Annotated[str, AfterValidator(_device_id)]
    kind: DeviceKind
    seq: Annotated[int, AfterValidator(_seq)]
    ts_us: Annotated[int, AfterValidator(_ts_us)]
    metrics: Annotated[dict[str, float], AfterValidator(_metrics)]

    def encode(self) -> bytes:
        """Serialise for publishing."""
        return self.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class EquipmentReadings:
    """A decoded message: its valid readings, and the readings rejected with their reasons."""

    message: EquipmentMessage
    readings: tuple[Reading, ...]
    rejected: tuple[RejectedReading, ...]


def decode_equipment_message(payload: bytes) -> EquipmentMessage:
    """Parse an equipment message; raise ContractError on anything malformed."""
    if len(payload) > MAX_EQUIPMENT_PAYLOAD_BYTES:
        raise ContractError(
            f"equipment message of {len(payload)} bytes exceeds {MAX_EQUIPMENT_PAYLOAD_BYTES}"
        )
    try:
        message = EquipmentMessage.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("equipment message", exc) from None
    # The schema parser keeps the last of duplicate keys and another parser might keep the
    # first: a message two readers would read differently is refused.
    json.loads(payload, object_pairs_hook=_unique_keys)
    return message


def equipment_readings(
    payload: bytes, *, topic: str | None = None, window: TimeWindow | None = None
) -> EquipmentReadings:
    """Decode a message (published on ``topic``) into readings checked against ``window``.

    Raises ContractError when the message as a whole is unusable (``OutOfWindow`` for its
    timestamp); unknown, foreign or out-of-range metrics come back in ``rejected``.
    """
    message = decode_equipment_message(payload)
    if topic is not None:
        named = device_id_from_equipment_topic(topic)
        if named is None:
            raise ContractError(f"topic {printable(topic, 200)} is not an equipment topic")
        if named != message.device_id:
            raise ContractError(
                f"topic names device {printable(repr(named), 140)} but the payload's device_id"
                f" is {message.device_id!r}"
            )
    check_ts(message.ts_us, window, message.device_id)
    readings: list[Reading] = []
    rejected: list[RejectedReading] = []
    for index, (metric, value) in enumerate(message.metrics.items()):
        problem = kind_metric_problem(message.kind, metric)
        unit = METRICS[metric].unit if problem is None else ""
        problem = problem or reading_problem(
            message.device_id, metric, value, unit, message.ts_us, message.seq
        )
        if problem is None:
            readings.append(
                Reading(message.device_id, metric, value, unit, message.ts_us, message.seq)
            )
        else:
            rejected.append(RejectedReading(index, problem, _fields(message, metric, value)))
    return EquipmentReadings(message, tuple(readings), tuple(rejected))


def _fields(message: EquipmentMessage, metric: str, value: float) -> dict[str, Any]:
    """A rejected reading's fields, for its dead letter."""
    return {
        "device_id": message.device_id,
        "kind": message.kind.value,
        "metric": metric,
        "value": value,
        "ts_us": message.ts_us,
        "seq": message.seq,
    }


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ContractError(f"equipment message: duplicate keys {printable(repr(repeated), 200)}")
    return dict(pairs)
