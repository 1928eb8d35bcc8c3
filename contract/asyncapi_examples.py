"""Example payloads of every channel in the AsyncAPI document, made with the contract's own code.

Each is built (and so validated) by the contract's models or encoders, never written by hand,
so an example the document shows is one the code accepts. Presence and command examples are
made only when those modules are present (``contract.asyncapi`` asks first).
"""

from __future__ import annotations

import importlib
import json

from contract.alert import AlertEvent, AlertTransition, Severity
from contract.codec import encode_batch
from contract.confirm import Confirmation, encode_confirmation
from contract.equipment import decode_equipment_message
from contract.health import ClockHealth, GatewayHealth
from contract.reading import Batch, Reading

EXAMPLE_TS_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
HOUR_US = 3_600_000_000


def equipment() -> list[bytes]:
    """Equipment example."""
    payload = json.dumps(
        {
            "device_id": "us-000",
            "kind": "ultrasound",
            "seq": 15,
            "ts_us": EXAMPLE_TS_US,
            "metrics": {"mains_voltage": 230.6, "ng_voltage": 0.4, "error_code": 0},
        }
    ).encode()
    return [decode_equipment_message(payload).encode()]


def batch() -> list[bytes]:
    """Batch example."""
    readings = (
        Reading("patch-0001", "wound_temp", 33.1, "degC", EXAMPLE_TS_US, 41),
        Reading("patch-0001", "wound_ph", 7.2, "pH", EXAMPLE_TS_US, 41),
        Reading("us-000", "mains_voltage", 230.6, "V", EXAMPLE_TS_US, 15),
    )
    # Version 1 (JSON), which this document describes; gateways send version 2 (binary).
    return [encode_batch(Batch("gw-ward-3", 7, readings), version=1)]


def confirmation() -> list[bytes]:
    """Confirmation example."""
    confirmation = Confirmation.of("gw-ward-3", [7, 8, 9])
    return [encode_confirmation(confirmation, key=b"example confirmation key")]


def health() -> list[bytes]:
    """Health example."""
    clock = ClockHealth(state="ntp", trusted=True, wall_us=EXAMPLE_TS_US)
    health = GatewayHealth(
        gateway_id="gw-ward-3", at_us=EXAMPLE_TS_US, uptime_s=3600.0, outbox_pending=0, clock=clock
    )
    return [health.encode()]


def alert() -> list[bytes]:
    """Alert example."""
    event = AlertEvent(
        device_id="patch-0001",
        rule_id="dressing.infection_suspected",
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=EXAMPLE_TS_US,
        message="wound temperature 2.1 degC above baseline for 6 h",
        evidence={"metric": "wound_temp", "threshold": 1.5},
    )
    return [event.encode()]


def notification() -> list[bytes]:
    """Notification example."""
    body = {
        "event": "ticket.dispatched",
        "ticket_id": "T-000042",
        "device_id": "us-000",
        "state": "dispatched",
        "title": "ultrasound us-000: mains sag",
        "assignee": "e1",
    }
    return [json.dumps(body, sort_keys=True, separators=(",", ":")).encode()]


def _decoded(module: str, decoder: str, doc: dict[str, object]) -> bytes:
    """``doc`` through the named decoder of an optional module, re-encoded."""
    decode = getattr(importlib.import_module(module), decoder)
    encoded: bytes = decode(json.dumps(doc).encode()).encode()
    return encoded


def equipment_status() -> list[bytes]:
    """Equipment presence example: online, and its last will."""
    online = {
        "kind": "equipment",
        "id": "us-000",
        "state": "online",
        "reason": "connected",
        "at_us": EXAMPLE_TS_US,
        "online_since_us": EXAMPLE_TS_US,
        "firmware": "4.2.1",
    }
    will = {**online, "state": "offline", "reason": "last_will"}
    return [_decoded("contract.presence", "decode_presence", d) for d in (online, will)]


def gateway_status() -> list[bytes]:
    """Gateway presence example: online."""
    online = {
        "kind": "gateway",
        "id": "gw-ward-3",
        "state": "online",
        "reason": "connected",
        "at_us": EXAMPLE_TS_US,
        "online_since_us": EXAMPLE_TS_US - HOUR_US,
    }
    return [_decoded("contract.presence", "decode_presence", online)]


def command_request() -> list[bytes]:
    """Command example: an impedance test of one ultrasound's probe."""
    request = {
        "command_id": "cmd-20260101-0001",
        "gateway_id": "gw-ward-3",
        "device_id": "us-000",
        "command": "probe_impedance_test",
        "args": {"frequency_khz": 5.0},
        "issued_at_us": EXAMPLE_TS_US,
        "expires_at_us": EXAMPLE_TS_US + HOUR_US,
        "timeout_s": 60.0,
    }
    return [_decoded("contract.commands", "decode_command_request", request)]


def equipment_reply() -> list[bytes]:
    """Equipment reply example."""
    reply = {
        "command_id": "cmd-20260101-0001",
        "device_id": "us-000",
        "status": "failed",
        "at_us": EXAMPLE_TS_US + 40_000_000,
        "result": {"elements": 128, "out_of_range": [17, 18]},
        "message": "2 of 128 elements outside 40-60 ohm",
    }
    return [_decoded("contract.commands", "decode_equipment_reply", reply)]


def command_result() -> list[bytes]:
    """Command result example, as the gateway reports it upstream."""
    result = {
        "command_id": "cmd-20260101-0001",
        "gateway_id": "gw-ward-3",
        "device_id": "us-000",
        "command": "probe_impedance_test",
        "status": "failed",
        "at_us": EXAMPLE_TS_US + 40_000_000,
        "result": {"elements": 128, "out_of_range": [17, 18]},
        "message": "2 of 128 elements outside 40-60 ohm",
    }
    return [_decoded("contract.commands", "decode_command_result", result)]
