"""The AsyncAPI document: generated from the contract, valid AsyncAPI 3.0.0, and true to the code.

The document is checked against the official AsyncAPI 3.0.0 JSON Schema (vendored from the npm
package @asyncapi/specs, tests/contract/asyncapi/README.md); its message schemas are checked
against the contract's own examples, against real payloads of the simulator, the gateway, ingest,
the rules and the service worker, and against what the decoders refuse.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from contract import Batch, Confirmation, encode_batch, encode_confirmation
from contract.asyncapi import CHANNELS, document
from contract.catalog import METRICS
from contract.topics import (
    alert_topic,
    batch_subscription,
    batch_topic,
    confirm_topic,
    equipment_subscription,
    equipment_topic,
    notification_topic,
)
from contract.validation import MAX_TS_US
from vigil.cli import app
from vigil.commands.contract import asyncapi_yaml

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SPEC_SCHEMA = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"
# @asyncapi/specs 6.11.1, schemas/3.0.0.json (tests/contract/asyncapi/README.md)
SCHEMA_SHA256 = "d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
DOC_URI = "urn:vigil:asyncapi"


def _offline(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # every reference must resolve inside the files we have


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(asyncapi_yaml())
    return loaded


@pytest.fixture(scope="module")
def spec_validator() -> Draft7Validator:
    raw = SPEC_SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "vendored schema changed"
    return Draft7Validator(json.loads(raw), registry=Registry(retrieve=_offline))


def payload_validator(doc: dict[str, Any], schema_name: str) -> Draft7Validator:
    """A validator for one message schema of the document, its refs resolved in the document."""
    resource = Resource.from_contents(doc, default_specification=DRAFT7)
    registry: Registry[Any] = Registry(retrieve=_offline).with_resource(DOC_URI, resource)
    return Draft7Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"}, registry=registry
    )


def errors(validator: Draft7Validator, instance: object) -> list[str]:
    return [e.message for e in validator.iter_errors(instance)]


# --- the document itself -------------------------------------------------------------------


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `vigil contract asyncapi --out docs/asyncapi.yaml`"
    )


def test_the_command_prints_and_writes_the_document(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["contract", "asyncapi"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == asyncapi_yaml()
    out = tmp_path / "deep" / "asyncapi.yaml"
    written = CliRunner().invoke(app, ["contract", "asyncapi", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == asyncapi_yaml()
    as_json = CliRunner().invoke(app, ["contract", "asyncapi", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == yaml.safe_load(asyncapi_yaml())


def test_it_is_a_valid_asyncapi_3_document(
    doc: dict[str, Any], spec_validator: Draft7Validator
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert errors(spec_validator, doc) == []


@pytest.mark.parametrize(
    "path, value",
    [
        (("operations", "gateway_sends_gatewayBatches", "action"), "publish"),  # AsyncAPI 2
        (("operations", "gateway_sends_gatewayBatches", "bindings", "mqtt", "qos"), 3),
        (("components", "schemas", "EquipmentMessage", "type"), "strange"),
        (("channels", "alerts", "adress"), "typo"),
        (("servers", "site", "protocol"), 7),
    ],
)
def test_the_spec_validator_catches_a_broken_document(
    doc: dict[str, Any], spec_validator: Draft7Validator, path: tuple[str, ...], value: object
) -> None:
    broken = copy.deepcopy(doc)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert errors(spec_validator, broken)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_reference_resolves_inside_the_document(doc: dict[str, Any]) -> None:
    refs = _refs(doc)
    assert len(refs) > 30
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"{ref}: no {part!r}"
            node = node[part]


def test_every_channel_address_comes_from_the_contracts_topic_helpers(
    doc: dict[str, Any],
) -> None:
    addresses = {name: c["address"] for name, c in doc["channels"].items()}
    assert addresses["equipmentTelemetry"] == equipment_topic("{site}", "{device_id}")
    assert addresses["gatewayBatches"] == batch_topic("{gateway_id}")
    assert addresses["gatewayConfirms"] == confirm_topic("{gateway_id}")
    assert addresses["alerts"] == alert_topic("{device_id}")
    assert addresses["notifications"] == notification_topic("{role}", "{subject}")
    for name, channel in doc["channels"].items():
        assert set(re.findall(r"{(\w+)}", channel["address"])) == set(channel["parameters"]), name
    # The subscriptions the processes really make match the templates.
    concrete = {
        "equipmentTelemetry": (equipment_subscription("site-a"), equipment_topic("site-a", "u")),
        "gatewayBatches": (batch_subscription(), batch_topic("gw-1")),
    }
    for name, (subscription, topic) in concrete.items():
        template = re.sub(r"{\w+}", "+", addresses[name])
        assert template.replace("{site}", "site-a") in (subscription, template)
        assert re.fullmatch(re.sub(r"{\w+}", "[^/]+", addresses[name]), topic)


def test_every_channel_has_an_operation_of_a_vigil_process(doc: dict[str, Any]) -> None:
    used = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values()}
    assert used == set(doc["channels"]) == {c.name for c in CHANNELS}
    receive = doc["operations"]["gateway_receives_equipmentTelemetry"]
    assert receive["action"] == "receive"
    assert receive["bindings"]["mqtt"]["qos"] == 1


def test_a_second_model_defining_a_schema_differently_is_refused() -> None:
    from dataclasses import replace

    from pydantic import BaseModel

    class DeviceKind(BaseModel):  # clashes with the catalog's enum of that name
        other: int

    class Clash(BaseModel):
        kind: DeviceKind

    channels = [*CHANNELS, replace(CHANNELS[0], name="clash", model=Clash, examples=list)]
    with pytest.raises(ValueError, match="DeviceKind"):
        document(channels)


# --- messages against their schemas --------------------------------------------------------


def test_the_documents_own_examples_fit_their_schemas_and_decode(doc: dict[str, Any]) -> None:
    from contract import decode_alert, decode_batch, decode_confirmation, decode_equipment_message
    from contract.health import decode_health

    decoders = {
        "EquipmentMessage": decode_equipment_message,
        "WireBatchV1": decode_batch,
        "WireConfirmationV1": decode_confirmation,
        "GatewayHealth": decode_health,
        "AlertEvent": decode_alert,
        "NotificationMessage": lambda raw: json.loads(raw),
    }
    # Presence and commands come from another branch: their decoders once they are here.
    optional = {
        "contract.presence": {"PresenceStatus": "decode_presence"},
        "contract.commands": {
            "CommandRequest": "decode_command_request",
            "CommandResult": "decode_command_result",
            "EquipmentReply": "decode_equipment_reply",
        },
    }
    for module, names in optional.items():
        if importlib.util.find_spec(module) is not None:
            loaded = importlib.import_module(module)
            decoders |= {name: getattr(loaded, decoder) for name, decoder in names.items()}
    for name, message in doc["components"]["messages"].items():
        validator = payload_validator(doc, name)
        assert message["examples"], name
        for example in message["examples"]:
            assert errors(validator, example["payload"]) == [], name
            decoders[name](json.dumps(example["payload"]).encode())


def test_the_simulators_equipment_messages_fit(doc: dict[str, Any]) -> None:
    from simulator.fleet import Fleet, FleetSpec
    from vigil.demo import DEMO_TICK_S, demo_faults

    spec = FleetSpec(seed=7, patches=0, equipment=5, faults=demo_faults(), tick_s=DEMO_TICK_S)
    fleet = Fleet(spec)
    validator = payload_validator(doc, "EquipmentMessage")
    seen = 0
    for tick in range(0, 360, 7):
        for message in fleet.equipment_messages(tick):
            assert errors(validator, json.loads(message.encode())) == []
            seen += 1
    assert seen > 100


def test_gateway_batches_and_ingest_confirmations_fit(doc: dict[str, Any]) -> None:
    from simulator.fleet import Fleet, FleetSpec

    fleet = Fleet(FleetSpec(seed=3, patches=20, equipment=0))
    readings = tuple(r for tick in range(30) for r in fleet.patch_readings(tick))
    batch = json.loads(encode_batch(Batch("gw-ward-3", 12, readings), version=1))
    assert errors(payload_validator(doc, "WireBatchV1"), batch) == []
    confirmation = json.loads(encode_confirmation(Confirmation.of("gw-ward-3", [12, 13]), b"k"))
    assert errors(payload_validator(doc, "WireConfirmationV1"), confirmation) == []


def test_a_gateways_health_summary_and_alerts_fit(doc: dict[str, Any], tmp_path: Path) -> None:
    from gateway.app import Gateway, GatewaySettings

    gateway = Gateway(GatewaySettings(outbox_path=tmp_path / "outbox.db"))
    try:
        health = gateway.health.snapshot()
        alarm = gateway.alarms.report("gateway.source_failed", True, "x died", {"task": "x"})
    finally:
        gateway.outbox.close()
    assert errors(payload_validator(doc, "GatewayHealth"), json.loads(health.encode())) == []
    assert alarm is not None  # the gateway's own alerts go out on the alerts channel
    assert errors(payload_validator(doc, "AlertEvent"), json.loads(alarm.encode())) == []


def test_the_rule_packs_alerts_fit(doc: dict[str, Any]) -> None:
    from rules import load_pack
    from simulator.fleet import Fleet, FleetSpec
    from vigil.commands.rules import replay
    from vigil.demo import DEMO_TICK_S, demo_faults

    spec = FleetSpec(seed=7, patches=50, equipment=5, faults=demo_faults(), tick_s=DEMO_TICK_S)
    fleet = Fleet(spec)
    readings = []
    for tick in range(360):
        readings += fleet.patch_readings(tick)
        for message in fleet.equipment_messages(tick):
            from contract import equipment_readings

            readings += equipment_readings(message.encode()).readings
    events = replay([*load_pack("dressings"), *load_pack("equipment")], None, readings)
    assert events
    validator = payload_validator(doc, "AlertEvent")
    for event in events:
        assert errors(validator, json.loads(event.encode())) == []


def test_the_service_workers_notifications_fit(doc: dict[str, Any]) -> None:
    from service.model import Device, Ticket, Tier
    from service.notifications import mqtt_body, opened_notifications
    from service.sla import SlaConfig
    from simulator.fleet import Fleet, FleetSpec
    from vigil.demo import demo_installed_base

    fleet = Fleet(FleetSpec(seed=7, patches=3, equipment=2))
    _, devices, _, _ = demo_installed_base(fleet, "site-a")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    validator = payload_validator(doc, "NotificationMessage")
    bodies = []
    for device in devices:
        assert isinstance(device, Device)
        ticket = Ticket(
            id=f"T-{device.id}",
            device_id=device.id,
            tier=Tier.URGENT,
            tier_since=now,
            opened_at=now,
            title="needs attention",
            assignee="e1",
        )
        for note in opened_notifications(ticket, device, now, SlaConfig()):
            bodies.append(json.loads(mqtt_body(note)))
    assert {b.get("message") is not None for b in bodies} == {True, False}  # patients too
    for body in bodies:
        assert errors(validator, body) == []


# --- what the decoders refuse, the schema refuses ------------------------------------------

GOOD = {
    "device_id": "us-000",
    "kind": "ultrasound",
    "seq": 15,
    "ts_us": 1_767_225_600_000_000,
    "metrics": {"mains_voltage": 230.6, "error_code": 0},
}


@pytest.mark.parametrize(
    "change",
    [
        {"firmware": "1.2"},  # extra fields are refused
        {"seq": "15"},  # a number in a string
        {"seq": -1},
        {"seq": 2**63},
        {"ts_us": 0},
        {"ts_us": 253_402_300_800_000_000},  # after the year 9999
        {"device_id": "us/000"},
        {"device_id": "us-000\n"},
        {"device_id": ""},
        {"device_id": "d" * 129},
        {"kind": "toaster"},
        {"metrics": {}},
        {"metrics": {"wound_ph": 7.0}},  # not an ultrasound's metric
        {"metrics": {"mains_voltage": 301.0}},  # out of range
        {"metrics": {"error_code": 1.5}},  # a whole-number metric
        {"metrics": {"colour": 1.0}},  # not in the catalog
        {"metrics": {"mains_voltage": True}},
    ],
)
def test_an_equipment_message_the_gateway_refuses_the_schema_refuses(
    doc: dict[str, Any], change: dict[str, Any]
) -> None:
    from contract import ContractError, equipment_readings

    payload = {**GOOD, **change}
    validator = payload_validator(doc, "EquipmentMessage")
    assert errors(validator, GOOD) == []
    assert errors(validator, payload), change
    try:
        decoded = equipment_readings(json.dumps(payload).encode())
    except ContractError:
        return
    assert decoded.rejected, change  # refused reading by reading, never silently accepted


def test_a_batch_with_a_bad_column_is_refused_by_the_schema(doc: dict[str, Any]) -> None:
    batch = json.loads(
        encode_batch(Batch("gw-1", 1, ((fleet_reading := _reading()),)), version=1)
    )  # one good reading
    validator = payload_validator(doc, "WireBatchV1")
    assert errors(validator, batch) == []
    assert fleet_reading.metric == "wound_temp"
    for column, bad in [("metric", ["colour"]), ("seq", [-1]), ("device_id", ["a/b"])]:
        assert errors(validator, {**batch, column: bad}), column
    assert errors(validator, {**batch, "extra": 1})
    assert errors(validator, {**batch, "v": 2})


def _reading() -> Any:
    from contract import Reading

    return Reading("patch-0001", "wound_temp", 33.0, "degC", 1_767_225_600_000_000, 1)


def test_a_command_with_arguments_its_catalogue_refuses_is_refused_by_the_schema(
    doc: dict[str, Any],
) -> None:
    commands = pytest.importorskip("contract.commands", reason="presence/commands not merged yet")
    example = doc["components"]["messages"]["CommandRequest"]["examples"][0]["payload"]
    validator = payload_validator(doc, "CommandRequest")
    assert errors(validator, example) == []
    for args in ({"frequency_khz": 50.0}, {"frequency_khz": 5.0, "power": 1}):
        bad = {**example, "args": args}
        assert errors(validator, bad), args
        with pytest.raises(commands.ContractError):
            commands.decode_command_request(json.dumps(bad).encode())
    assert errors(validator, {**example, "command_id": "a/b"})
    assert errors(validator, {**example, "command_id": "abc\n"})


# --- the schema and the decoder agree --------------------------------------------------------

# Characters a regular expression can judge: MQTT's reserved ones, C0 controls, DEL, and
# printable ones. (Other non-printable characters, which no JSON Schema regex can name
# portably, are refused by the code alone: the schema's description says so.)
_ID_ALPHABET = "ab-09.é/+#\x00\n\x1f\x7f"
_METRIC_NAMES = [*sorted(METRICS), "colour"]


def _metric_value(name: str) -> st.SearchStrategy[float | int]:
    spec = METRICS[name]
    if spec.integral:
        return st.integers(int(spec.low), int(spec.high))
    return st.floats(spec.low, spec.high)


_GOOD_METRICS = st.lists(
    st.sampled_from(["mains_voltage", "ng_voltage", "probe_health", "error_code", "usage_hours"]),
    min_size=1,
    max_size=5,
    unique=True,
).flatmap(lambda names: st.fixed_dictionaries({n: _metric_value(n) for n in names}))

_WILD: dict[str, st.SearchStrategy[Any]] = {
    "device_id": st.text(_ID_ALPHABET, max_size=130) | st.just("d" * 129),
    "kind": st.sampled_from(["patch", "toaster", "ULTRASOUND"]),
    "seq": st.sampled_from([-1, 2**63, 2**64]) | st.integers(-5, 2**63 + 5),
    "ts_us": st.sampled_from([0, -1, MAX_TS_US + 1, 2**63]) | st.integers(-5, MAX_TS_US + 5),
    "metrics": st.dictionaries(
        st.sampled_from(_METRIC_NAMES),
        st.floats(-200, 70_000, allow_nan=False)
        | st.integers(-200, 70_000)
        | st.sampled_from([0.5, 255.0, 300.0, 300.5, 65535.5, True]),
        max_size=6,
    ),
}


@st.composite
def equipment_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid equipment message, and half the time one to three fields made wild."""
    message: dict[str, Any] = {
        "device_id": draw(st.sampled_from(["us-000", "endo-1"]) | st.text("ab-09.é", min_size=1)),
        "kind": draw(st.sampled_from(["ultrasound", "endoscope"])),
        "seq": draw(st.integers(0, 2**63 - 1)),
        "ts_us": draw(st.integers(1, MAX_TS_US)),
        "metrics": draw(_GOOD_METRICS),
    }
    if draw(st.booleans()):
        for field in draw(st.lists(st.sampled_from(sorted(_WILD)), min_size=1, max_size=3)):
            message[field] = draw(_WILD[field])
        if draw(st.integers(0, 4)) == 0:
            message.pop(draw(st.sampled_from(sorted(message))))
        if draw(st.integers(0, 4)) == 0:
            message["firmware"] = "1.2"
    return message


@settings(max_examples=400)
@given(message=equipment_payloads())
def test_the_equipment_schema_accepts_exactly_what_the_gateway_stores_whole(
    message: dict[str, Any],
) -> None:
    from contract import ContractError, equipment_readings

    try:
        decoded = equipment_readings(json.dumps(message).encode())
    except ContractError:
        accepted = False
    else:
        accepted = not decoded.rejected
    assert (errors(EQUIPMENT_VALIDATOR, message) == []) == accepted, message


EQUIPMENT_VALIDATOR = payload_validator(yaml.safe_load(asyncapi_yaml()), "EquipmentMessage")
