"""Presence: the retained online/offline status of gateways and equipment, and its topics.

Each process sets an MQTT last will on its own status topic (never on a telemetry topic, where a
will would be dead-lettered as invalid telemetry), publishes ``online`` retained once connected
and ``offline`` (reason ``shutdown``) before a clean disconnect. A will is composed at connect
time, so its ``at_us`` is the connect instant; whoever receives it stamps the offline time.

Topics::

    site/<site>/equipment/<device>/status      equipment, on its site broker
    vigil/v1/gateways/<gw>/status              a gateway, on the uplink broker
    vigil/v1/gateways/<gw>/status/<device>     equipment status relayed by its gateway
    vigil/v1/gateways/<gw>/devices/<device>/info   a device's Device Information (retained)

``vigil/v1/gateways/+/status/#`` matches the last two (``#`` matches its parent level too).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from contract.errors import ContractError, invalid
from contract.topics import EQUIPMENT_PREFIX, UPLINK_PREFIX
from contract.validation import id_problem, ts_problem

PRESENCE_VERSION = 1
MAX_PRESENCE_PAYLOAD_BYTES = 4096


class PresenceState(StrEnum):
    """Whether the process holds its broker connection."""

    ONLINE = "online"
    OFFLINE = "offline"


class PresenceKind(StrEnum):
    """What reports its presence."""

    GATEWAY = "gateway"
    EQUIPMENT = "equipment"


class PresenceReason(StrEnum):
    """Why the state is what it is."""

    CONNECTED = "connected"
    SHUTDOWN = "shutdown"  # a clean disconnect: no alert
    LAST_WILL = "last_will"  # the broker lost the connection: the process died or the link


def _id(value: str) -> str:
    if problem := id_problem("id", value):
        raise ValueError(problem)
    return value


def _ts(value: int) -> int:
    if problem := ts_problem(value):
        raise ValueError(problem)
    return value


PresenceId = Annotated[str, AfterValidator(_id)]
PresenceUs = Annotated[int, AfterValidator(_ts)]


class PresenceStatus(BaseModel):
    """One retained status message. Strict: nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1] = 1
    kind: PresenceKind
    id: PresenceId
    state: PresenceState
    reason: PresenceReason
    at_us: PresenceUs  # when published; for a will, when the connection it guards was made
    online_since_us: PresenceUs | None = None  # when the process came up: uptime = now - this
    firmware: Annotated[str, Field(max_length=64)] = ""

    def encode(self) -> bytes:
        """Serialise for the status topic."""
        return self.model_dump_json().encode()


def decode_presence(payload: bytes) -> PresenceStatus:
    """Parse a status message; raise ContractError on anything malformed."""
    if len(payload) > MAX_PRESENCE_PAYLOAD_BYTES:
        raise ContractError(
            f"status message of {len(payload)} bytes exceeds {MAX_PRESENCE_PAYLOAD_BYTES}"
        )
    try:
        return PresenceStatus.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("presence status", exc) from None


def online(kind: PresenceKind, ident: str, at_us: int, since_us: int) -> PresenceStatus:
    """The status a process publishes once connected."""
    return PresenceStatus(
        kind=kind,
        id=ident,
        state=PresenceState.ONLINE,
        reason=PresenceReason.CONNECTED,
        at_us=at_us,
        online_since_us=since_us,
    )


def offline(
    kind: PresenceKind, ident: str, at_us: int, since_us: int, reason: PresenceReason
) -> PresenceStatus:
    """A will (``LAST_WILL``, composed at connect) or a clean goodbye (``SHUTDOWN``)."""
    return PresenceStatus(
        kind=kind,
        id=ident,
        state=PresenceState.OFFLINE,
        reason=reason,
        at_us=at_us,
        online_since_us=since_us,
    )


class DeviceInfoReport(BaseModel):
    """What a device says it is (BLE Device Information), relayed by its gateway, retained.

    The service reconciles it with the installed base: a firmware or hardware revision that
    moved on is recorded; a model or serial that differs is a mismatch event.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1] = 1
    gateway_id: PresenceId
    device_id: PresenceId
    at_us: PresenceUs
    model_number: Annotated[str, Field(min_length=1, max_length=64)]
    serial_number: Annotated[str, Field(min_length=1, max_length=64)]
    firmware_revision: Annotated[str, Field(min_length=1, max_length=64)]
    hardware_revision: Annotated[str, Field(max_length=64)] = ""

    def encode(self) -> bytes:
        """Serialise for the device-info topic."""
        return self.model_dump_json().encode()


def decode_device_info(payload: bytes) -> DeviceInfoReport:
    """Parse a device-info report; raise ContractError on anything malformed."""
    if len(payload) > MAX_PRESENCE_PAYLOAD_BYTES:
        raise ContractError(f"device info of {len(payload)} bytes is too big")
    try:
        return DeviceInfoReport.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("device info", exc) from None


def device_info_topic(gateway_id: str, device_id: str) -> str:
    """Where a gateway keeps one device's Device Information (retained)."""
    return f"{UPLINK_PREFIX}/{gateway_id}/devices/{device_id}/info"


def device_info_subscription() -> str:
    """What the service subscribes to for every device-info report."""
    return f"{UPLINK_PREFIX}/+/devices/+/info"


def parse_device_info_topic(topic: str) -> tuple[str, str]:
    """(gateway id, device id) of a device-info topic; ContractError if it is not one."""
    parts = topic.split("/")
    prefix = UPLINK_PREFIX.split("/")
    rest = parts[len(prefix) :]
    ok = parts[: len(prefix)] == prefix and len(rest) == 4
    if not ok or rest[1] != "devices" or rest[3] != "info" or not rest[0] or not rest[2]:
        raise ContractError(f"{topic[:200]!r} is not a device-info topic")
    return rest[0], rest[2]


def equipment_status_topic(site: str, device_id: str) -> str:
    """Where one piece of equipment keeps its status on its site broker."""
    return f"{EQUIPMENT_PREFIX}/{site}/equipment/{device_id}/status"


def equipment_status_subscription(site: str) -> str:
    """What a gateway subscribes to on its site broker to relay equipment presence."""
    return f"{EQUIPMENT_PREFIX}/{site}/equipment/+/status"


def gateway_status_topic(gateway_id: str) -> str:
    """Where a gateway keeps its own status on the uplink broker."""
    return f"{UPLINK_PREFIX}/{gateway_id}/status"


def relayed_status_topic(gateway_id: str, device_id: str) -> str:
    """Where a gateway relays one piece of equipment's status upstream."""
    return f"{UPLINK_PREFIX}/{gateway_id}/status/{device_id}"


def status_subscription() -> str:
    """What the service subscribes to: every gateway's status and every relayed one."""
    return f"{UPLINK_PREFIX}/+/status/#"


def health_subscription() -> str:
    """What the service subscribes to for gateway health summaries (contract.health)."""
    return f"{UPLINK_PREFIX}/+/health"


def device_from_equipment_status_topic(topic: str) -> str | None:
    """The device an equipment status topic names, or None if it is not one."""
    parts = topic.split("/")
    ok = len(parts) == 5 and parts[0] == EQUIPMENT_PREFIX and parts[2] == "equipment"
    return parts[3] if ok and parts[4] == "status" and parts[1] and parts[3] else None


def parse_status_topic(topic: str) -> tuple[str, str | None]:
    """(gateway id, relayed device id or None) of an uplink status topic; ContractError if not."""
    parts = topic.split("/")
    prefix = UPLINK_PREFIX.split("/")
    head, rest = parts[: len(prefix)], parts[len(prefix) :]
    if head != prefix or len(rest) not in (2, 3) or rest[1] != "status" or not all(rest):
        raise ContractError(f"{topic[:200]!r} is not a presence status topic")
    return rest[0], rest[2] if len(rest) == 3 else None


def gateway_from_health_topic(topic: str) -> str:
    """The gateway a health topic names; ContractError if it is not one."""
    parts = topic.split("/")
    prefix = UPLINK_PREFIX.split("/")
    rest = parts[len(prefix) :]
    if parts[: len(prefix)] != prefix or len(rest) != 2 or rest[1] != "health" or not rest[0]:
        raise ContractError(f"{topic[:200]!r} is not a gateway health topic")
    return rest[0]
