"""The presence and command contracts: what they accept, what they refuse and why."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import ContractError
from contract.commands import (
    CATALOGUE,
    CommandName,
    CommandRequest,
    CommandResult,
    CommandStatus,
    decode_command_request,
    decode_command_result,
    decode_equipment_reply,
    gateway_from_result_topic,
    validate_args,
)
from contract.presence import (
    PresenceKind,
    PresenceReason,
    decode_device_info,
    decode_presence,
    device_from_equipment_status_topic,
    gateway_from_health_topic,
    online,
    parse_device_info_topic,
    parse_status_topic,
    status_subscription,
)

T = 1_700_000_000_000_000


def request(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "command_id": "c1",
        "gateway_id": "gw-1",
        "device_id": "us-000",
        "command": "read_error_log",
        "args": {"max_entries": 5},
        "issued_at_us": T,
        "expires_at_us": T + 60_000_000,
    }
    return {**base, **changes}


def test_every_command_has_defaults_that_validate() -> None:
    for name, spec in CATALOGUE.items():
        assert validate_args(name, {}) == spec.args().model_dump()
    assert set(CATALOGUE) == set(CommandName)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"command": "format_disk"}, "command"),
        ({"args": {"max_entries": 0}}, "max_entries"),
        ({"args": {"max_entries": "5"}}, "max_entries"),
        ({"args": {"verbose": True}}, "verbose"),
        ({"command_id": "a/b"}, "command_id"),
        ({"device_id": "us/+"}, "device_id"),
        ({"expires_at_us": T}, "expires_at_us"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 601}, "timeout_s"),
        ({"issued_at_us": "now"}, "issued_at_us"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(ContractError, match=reason):
        decode_command_request(json.dumps(request(**changes)).encode())


def test_a_good_request_round_trips() -> None:
    parsed = decode_command_request(json.dumps(request()).encode())
    assert parsed == CommandRequest.model_validate_json(json.dumps(request()))
    assert decode_command_request(parsed.encode()) == parsed


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_decoders(payload: bytes) -> None:
    for decode in (
        decode_command_request,
        decode_command_result,
        decode_equipment_reply,
        decode_presence,
        decode_device_info,
    ):
        with contextlib.suppress(ContractError):
            decode(payload)


def test_results_and_replies_are_bounded() -> None:
    big = CommandResult(
        command_id="c1",
        gateway_id="gw-1",
        device_id="us-000",
        command=CommandName.SELF_TEST,
        status=CommandStatus.OK,
        at_us=T,
    ).model_dump()
    big["result"] = {"blob": "x" * 40_000}
    with pytest.raises(ContractError, match="bytes"):
        decode_command_result(json.dumps(big).encode())


def test_presence_topics() -> None:
    assert parse_status_topic("vigil/v1/gateways/gw-1/status") == ("gw-1", None)
    assert parse_status_topic("vigil/v1/gateways/gw-1/status/us-1") == ("gw-1", "us-1")
    assert status_subscription() == "vigil/v1/gateways/+/status/#"
    for bad in ("vigil/v1/gateways/gw-1/batches", "vigil/v1/gateways//status", "x/status"):
        with pytest.raises(ContractError):
            parse_status_topic(bad)
    assert device_from_equipment_status_topic("site/a/equipment/us-1/status") == "us-1"
    assert device_from_equipment_status_topic("site/a/equipment/us-1/telemetry") is None
    assert gateway_from_health_topic("vigil/v1/gateways/gw-1/health") == "gw-1"
    assert gateway_from_result_topic("vigil/v1/gateways/gw-1/command-results") == "gw-1"
    assert parse_device_info_topic("vigil/v1/gateways/g/devices/p/info") == ("g", "p")
    with pytest.raises(ContractError):
        parse_device_info_topic("vigil/v1/gateways/g/devices/p/status")


def test_presence_status_is_strict() -> None:
    status = online(PresenceKind.EQUIPMENT, "us-1", T, T - 5)
    assert decode_presence(status.encode()) == status
    doc = json.loads(status.encode())
    for field, value in (("state", "maybe"), ("at_us", "1"), ("reason", "crash"), ("id", "")):
        with pytest.raises(ContractError, match=field):
            decode_presence(json.dumps({**doc, field: value}).encode())
    assert PresenceReason.LAST_WILL == "last_will"
