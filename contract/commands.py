"""Remote diagnosis: the command catalogue and its MQTT 5 request/response messages.

An engineer's command travels service → uplink broker → gateway → site broker → equipment and
its result back, each leg an MQTT 5 request carrying a Response Topic and Correlation Data (the
command id's bytes), answered on that topic with the same Correlation Data.

Topics::

    vigil/v1/gateways/<gw>/commands/<command_id>   request to a gateway: retained, with a
                                                    Message Expiry Interval, so a gateway that
                                                    is offline finds it when it comes back
    vigil/v1/gateways/<gw>/command-results         the gateway's results (its Response Topic)
    site/<site>/equipment/<device>/commands        the gateway's request to the equipment
    site/<site>/gateways/<gw>/replies              the equipment's replies (Response Topic)

Every command's arguments are a strict pydantic model: an unknown argument, a wrong type or a
value out of range is refused with the field named, by the API (422) and again by the gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from contract.catalog import DeviceKind
from contract.errors import ContractError, invalid
from contract.topics import EQUIPMENT_PREFIX, UPLINK_PREFIX
from contract.validation import id_problem, ts_problem

COMMAND_VERSION = 1
MAX_COMMAND_PAYLOAD_BYTES = 16 * 1024
MAX_RESULT_PAYLOAD_BYTES = 64 * 1024
MAX_TIMEOUT_S = 600.0
_COMMAND_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CommandName(StrEnum):
    """Every command a piece of equipment answers."""

    SELF_TEST = "self_test"
    READ_ERROR_LOG = "read_error_log"
    PROBE_IMPEDANCE_TEST = "probe_impedance_test"
    MAINS_NG_MEASUREMENT = "mains_ng_measurement"
    REBOOT = "reboot"


class CommandStatus(StrEnum):
    """How a command ended; every one is final."""

    OK = "ok"  # ran, and found nothing wrong
    FAILED = "failed"  # ran, and found a fault (the result says which)
    REJECTED = "rejected"  # refused: unsupported here, bad arguments, not for this device
    ERROR = "error"  # the equipment could not run it
    TIMEOUT = "timeout"  # delivered to the gateway, the equipment did not answer in time
    EXPIRED = "expired"  # not delivered (gateway offline) before it expired


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SelfTestArgs(_Args):
    """Power-on self test: supply, earth, probe, error state."""


class ReadErrorLogArgs(_Args):
    """The newest entries of the equipment's error log."""

    max_entries: Annotated[int, Field(ge=1, le=200)] = 20


class ProbeImpedanceArgs(_Args):
    """Measure every transducer element's impedance at one frequency."""

    frequency_khz: Annotated[float, Field(ge=1.0, le=20.0)] = 5.0


class MainsNgArgs(_Args):
    """Sample the supply voltage and the neutral-to-ground voltage."""

    samples: Annotated[int, Field(ge=1, le=60)] = 5


class RebootArgs(_Args):
    """Restart the equipment's controller."""

    delay_s: Annotated[int, Field(ge=0, le=300)] = 0


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One catalogue entry: its arguments, which equipment answers it, what it does."""

    name: CommandName
    args: type[_Args]
    kinds: frozenset[DeviceKind]
    timeout_s: float  # how long the gateway waits for the equipment by default
    summary: str


_EQUIPMENT = frozenset({DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE})
CATALOGUE: Mapping[CommandName, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            CommandName.SELF_TEST, SelfTestArgs, _EQUIPMENT, 30.0, "supply, earth, probe, errors"
        ),
        CommandSpec(
            CommandName.READ_ERROR_LOG, ReadErrorLogArgs, _EQUIPMENT, 10.0, "newest error log"
        ),
        CommandSpec(
            CommandName.PROBE_IMPEDANCE_TEST,
            ProbeImpedanceArgs,
            frozenset({DeviceKind.ULTRASOUND}),
            60.0,
            "impedance of every transducer element",
        ),
        CommandSpec(
            CommandName.MAINS_NG_MEASUREMENT, MainsNgArgs, _EQUIPMENT, 30.0, "mains and N-G volts"
        ),
        CommandSpec(CommandName.REBOOT, RebootArgs, _EQUIPMENT, 120.0, "restart the controller"),
    )
}


def command_spec(command: str) -> CommandSpec:
    """The catalogue entry of ``command``; ContractError naming the known ones if none."""
    try:
        return CATALOGUE[CommandName(command)]
    except ValueError:
        known = ", ".join(CATALOGUE)
        raise ContractError(f"unknown command {command[:80]!r}; one of {known}") from None


def validate_args(command: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` checked against ``command``'s model, with defaults filled in; ContractError."""
    spec = command_spec(command)
    try:
        return spec.args.model_validate(dict(args)).model_dump()
    except ValidationError as exc:
        raise invalid(f"{command} arguments", exc) from None


def command_id_problem(value: object) -> str | None:
    """Why ``value`` is not a usable command id (it becomes a topic level), or None."""
    if not isinstance(value, str) or not _COMMAND_ID.fullmatch(value):
        return "command_id must be 1-64 characters of A-Z a-z 0-9 . _ -"
    return None


def _command_id(value: str) -> str:
    if problem := command_id_problem(value):
        raise ValueError(problem)
    return value


def _ident(value: str) -> str:
    if problem := id_problem("id", value):
        raise ValueError(problem)
    return value


def _ts(value: int) -> int:
    if problem := ts_problem(value):
        raise ValueError(problem)
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str)) > MAX_RESULT_PAYLOAD_BYTES // 2:
        raise ValueError(f"more than {MAX_RESULT_PAYLOAD_BYTES // 2} bytes of JSON")
    return value


CommandId = Annotated[str, AfterValidator(_command_id)]
Ident = Annotated[str, AfterValidator(_ident)]
Instant = Annotated[int, AfterValidator(_ts)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
Message = Annotated[str, Field(max_length=500)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def encode(self) -> bytes:
        """Serialise for publishing."""
        return self.model_dump_json().encode()


M = TypeVar("M", bound=_Message)


class CommandRequest(_Message):
    """A command for one piece of equipment behind one gateway."""

    version: Literal[1] = 1
    command_id: CommandId
    gateway_id: Ident
    device_id: Ident
    command: CommandName
    args: JsonObject = Field(default_factory=dict)
    issued_at_us: Instant
    expires_at_us: Instant  # not delivered to the equipment by then: EXPIRED
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 30.0  # equipment's answer

    @model_validator(mode="after")
    def _checked(self) -> CommandRequest:
        validate_args(self.command, self.args)
        if self.expires_at_us <= self.issued_at_us:
            raise ValueError("expires_at_us must be after issued_at_us")
        return self


class EquipmentReply(_Message):
    """The equipment's answer on the gateway's reply topic."""

    version: Literal[1] = 1
    command_id: CommandId
    device_id: Ident
    status: CommandStatus
    at_us: Instant
    result: JsonObject = Field(default_factory=dict)
    message: Message = ""


class CommandResult(_Message):
    """A command's final result, as a gateway reports it upstream."""

    version: Literal[1] = 1
    command_id: CommandId
    gateway_id: Ident
    device_id: Ident
    command: CommandName
    status: CommandStatus
    at_us: Instant
    result: JsonObject = Field(default_factory=dict)
    message: Message = ""


def _decode(model: type[M], what: str, payload: bytes, limit: int) -> M:
    if len(payload) > limit:
        raise ContractError(f"{what} of {len(payload)} bytes exceeds {limit}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid(what, exc) from None


def decode_command_request(payload: bytes) -> CommandRequest:
    """Parse a command request; ContractError on anything malformed."""
    return _decode(CommandRequest, "command request", payload, MAX_COMMAND_PAYLOAD_BYTES)


def decode_equipment_reply(payload: bytes) -> EquipmentReply:
    """Parse an equipment's reply; ContractError on anything malformed."""
    return _decode(EquipmentReply, "equipment reply", payload, MAX_RESULT_PAYLOAD_BYTES)


def decode_command_result(payload: bytes) -> CommandResult:
    """Parse a gateway's command result; ContractError on anything malformed."""
    return _decode(CommandResult, "command result", payload, MAX_RESULT_PAYLOAD_BYTES)


def command_topic(gateway_id: str, command_id: str) -> str:
    """Where the service leaves a command for a gateway (retained until answered or expired)."""
    return f"{UPLINK_PREFIX}/{gateway_id}/commands/{command_id}"


def command_subscription(gateway_id: str) -> str:
    """What a gateway subscribes to for its commands."""
    return f"{UPLINK_PREFIX}/{gateway_id}/commands/+"


def command_result_topic(gateway_id: str) -> str:
    """Where a gateway answers (the Response Topic of its requests)."""
    return f"{UPLINK_PREFIX}/{gateway_id}/command-results"


def command_result_subscription() -> str:
    """What the service subscribes to for every gateway's results."""
    return f"{UPLINK_PREFIX}/+/command-results"


def equipment_command_topic(site: str, device_id: str) -> str:
    """Where a gateway sends a command to one piece of equipment."""
    return f"{EQUIPMENT_PREFIX}/{site}/equipment/{device_id}/commands"


def equipment_command_subscription(site: str, device_id: str) -> str:
    """What a piece of equipment subscribes to for its commands."""
    return equipment_command_topic(site, device_id)


def equipment_reply_topic(site: str, gateway_id: str) -> str:
    """Where equipment answers a gateway's commands (the Response Topic the gateway sets)."""
    return f"{EQUIPMENT_PREFIX}/{site}/gateways/{gateway_id}/replies"


def gateway_from_result_topic(topic: str) -> str:
    """The gateway a result topic names; ContractError if it is not one."""
    parts = topic.split("/")
    prefix = UPLINK_PREFIX.split("/")
    rest = parts[len(prefix) :]
    if parts[: len(prefix)] != prefix or len(rest) != 2 or rest[1] != "command-results":
        raise ContractError(f"{topic[:200]!r} is not a command result topic")
    return rest[0]
