"""The AsyncAPI 3.0 document of every MQTT channel, generated from the contract's own models.

One table (``CHANNELS``) says which channel carries which model, on which broker, who publishes
and who subscribes; the message schemas come from ``model_json_schema()`` and the topic
templates from the helpers in ``contract.topics``, so the document cannot drift from the code.
Rules the models enforce in validators (ids, 64-bit integers, the metric catalog) are added to
the schemas from the same constants the validators use (``contract/asyncapi_schemas.py``).
``vigil contract asyncapi`` prints it; ``docs/asyncapi.yaml`` is its committed copy (a test keeps
them equal).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract import asyncapi_examples as ex
from contract.alert import AlertEvent
from contract.asyncapi_schemas import REF, REFINE, constrain, model_schemas, public_name
from contract.codec import MAX_PAYLOAD_BYTES, _WireBatchV1
from contract.confirm import MAX_CONFIRM_BYTES, _WireConfirmationV1
from contract.equipment import (
    MAX_EQUIPMENT_PAYLOAD_BYTES,
    EquipmentMessage,
)
from contract.health import GatewayHealth, health_topic
from contract.topics import (
    alert_topic,
    batch_topic,
    confirm_topic,
    equipment_topic,
    notification_topic,
)
from contract.validation import (
    ID_RESERVED,
    MAX_ID_LENGTH,
)

ASYNCAPI_VERSION = "3.0.0"
DOCUMENT_VERSION = "1.0.0"
MQTT_BINDING = "0.2.0"

Broker = Literal["site", "uplink"]


class NotificationMessage(BaseModel):
    """A notification for one recipient: the event name and what that recipient may see.

    Written by the service worker (``service.notifications.mqtt_body``) as canonical JSON (sorted
    keys). Which further fields appear depends on the event and on the recipient's role: the
    service team and engineers get the full ticket summary, a hospital a brief, a patient only
    their kit's ticket, state and a message. Receivers must ignore fields they do not know.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    event: Annotated[str, Field(pattern=r"^[a-z_]+\.[a-z_]+$")]
    ticket_id: Annotated[str, Field(min_length=1)]
    device_id: str | None = None
    state: str | None = None
    assignee: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    """One row of the table: an MQTT channel, its message, its broker, its two ends.

    ``topic`` is the contract's topic helper called with ``{placeholders}``; publishers and
    subscribers that are vigil processes become operations, the others (equipment, third-party
    receivers) are named in the description.
    """

    name: str
    topic: str
    model: type[BaseModel]
    broker: Broker
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    summary: str
    examples: Callable[[], list[bytes]]
    max_bytes: int | None = None
    retained: bool = False


VIGIL_PROCESSES = frozenset({"gateway", "ingest", "rules", "service"})

PARAMETERS: dict[str, dict[str, Any]] = {
    "site": {"description": "The site (hospital) id; the gateway is configured with it."},
    "device_id": {
        "description": (
            f"The device id: 1-{MAX_ID_LENGTH} printable characters without"
            f" {' '.join(ID_RESERVED)}. Equal to the payload's device_id."
        )
    },
    "gateway_id": {"description": "The gateway id; its certificate CN on the uplink broker."},
    "role": {
        "description": "Who the notification is for.",
        "enum": ["service", "engineer", "hospital", "patient"],
    },
    "subject": {
        "description": "Which one of them: `team`, an engineer id, a site id or a patient id."
    },
    "command_id": {"description": "The command's id: 1-64 characters of A-Z a-z 0-9 . _ -"},
}


CHANNELS: list[Channel] = [
    Channel(
        "equipmentTelemetry",
        equipment_topic("{site}", "{device_id}"),
        EquipmentMessage,
        "site",
        ("equipment",),
        ("gateway",),
        "Telemetry of one piece of equipment: several metrics at one instant.",
        ex.equipment,
        MAX_EQUIPMENT_PAYLOAD_BYTES,
    ),
    Channel(
        "gatewayBatches",
        batch_topic("{gateway_id}"),
        _WireBatchV1,
        "uplink",
        ("gateway",),
        ("ingest", "rules"),
        "A gateway's batch of readings. Gateways send wire version 2, a binary columnar envelope"
        " (magic VGB\\x02; layout in docs/contract.md, contract/batch_binary.py); ingest also"
        " accepts the JSON wire version 1 described here, with the same validation rules.",
        ex.batch,
        MAX_PAYLOAD_BYTES,
    ),
    Channel(
        "gatewayConfirms",
        confirm_topic("{gateway_id}"),
        _WireConfirmationV1,
        "uplink",
        ("ingest",),
        ("gateway",),
        "Ingest confirms the batches it committed; only then does the gateway forget them.",
        ex.confirmation,
        MAX_CONFIRM_BYTES,
    ),
    Channel(
        "gatewayHealth",
        health_topic("{gateway_id}"),
        GatewayHealth,
        "uplink",
        ("gateway",),
        ("monitoring",),
        "A gateway's periodic health summary (retained: the latest is there on subscribe).",
        ex.health,
        retained=True,
    ),
    Channel(
        "alerts",
        alert_topic("{device_id}"),
        AlertEvent,
        "uplink",
        ("rules", "ingest", "gateway"),
        ("service",),
        "One step in the life of an alert about one device (raised, acknowledged, cleared).",
        ex.alert,
    ),
    Channel(
        "notifications",
        notification_topic("{role}", "{subject}"),
        NotificationMessage,
        "uplink",
        ("service",),
        ("pagers, apps and hospital systems",),
        "What one recipient is told about a ticket or an SLA breach.",
        ex.notification,
    ),
]


def _landed(module: str) -> bool:
    """Whether a contract module that another branch adds (presence, commands) is here yet."""
    return importlib.util.find_spec(module) is not None


def presence_channels() -> list[Channel]:
    """The retained online/offline status of equipment and gateways (contract/presence.py)."""
    presence = importlib.import_module("contract.presence")
    status, limit = presence.PresenceStatus, presence.MAX_PRESENCE_PAYLOAD_BYTES
    summary = "Online or offline, retained; the broker publishes the last will when a link dies."
    return [
        Channel(
            "equipmentStatus",
            presence.equipment_status_topic("{site}", "{device_id}"),
            status,
            "site",
            ("equipment",),
            ("gateway",),
            f"A piece of equipment's presence. {summary}",
            ex.equipment_status,
            limit,
            retained=True,
        ),
        Channel(
            "gatewayStatus",
            presence.gateway_status_topic("{gateway_id}"),
            status,
            "uplink",
            ("gateway",),
            ("service",),
            f"A gateway's presence. {summary}",
            ex.gateway_status,
            limit,
            retained=True,
        ),
        Channel(
            "relayedEquipmentStatus",
            presence.relayed_status_topic("{gateway_id}", "{device_id}"),
            status,
            "uplink",
            ("gateway",),
            ("service",),
            "Equipment presence relayed upstream by its gateway.",
            ex.equipment_status,
            limit,
            retained=True,
        ),
    ]


def command_channels() -> list[Channel]:
    """Remote diagnosis: commands and their results, both legs (contract/commands.py)."""
    commands = importlib.import_module("contract.commands")
    request_limit = commands.MAX_COMMAND_PAYLOAD_BYTES
    result_limit = commands.MAX_RESULT_PAYLOAD_BYTES
    return [
        Channel(
            "gatewayCommands",
            commands.command_topic("{gateway_id}", "{command_id}"),
            commands.CommandRequest,
            "uplink",
            ("service",),
            ("gateway",),
            "A command for one piece of equipment behind a gateway: MQTT 5 request, retained"
            " with a message expiry until answered or expired (an empty retained payload, which"
            " the service publishes then, clears it).",
            ex.command_request,
            request_limit,
            retained=True,
        ),
        Channel(
            "gatewayCommandResults",
            commands.command_result_topic("{gateway_id}"),
            commands.CommandResult,
            "uplink",
            ("gateway",),
            ("service",),
            "A command's final result, as the gateway reports it (the requests' Response Topic).",
            ex.command_result,
            result_limit,
        ),
        Channel(
            "equipmentCommands",
            commands.equipment_command_topic("{site}", "{device_id}"),
            commands.CommandRequest,
            "site",
            ("gateway",),
            ("equipment",),
            "The gateway's command to one piece of equipment (MQTT 5 request).",
            ex.command_request,
            request_limit,
        ),
        Channel(
            "equipmentReplies",
            commands.equipment_reply_topic("{site}", "{gateway_id}"),
            commands.EquipmentReply,
            "site",
            ("equipment",),
            ("gateway",),
            "The equipment's answer, with the request's Correlation Data.",
            ex.equipment_reply,
            result_limit,
        ),
    ]


if _landed("contract.presence"):
    CHANNELS += presence_channels()
if _landed("contract.commands"):
    CHANNELS += command_channels()


def _message(channel: Channel, schema_name: str) -> dict[str, Any]:
    """The message object: its payload schema, examples and MQTT binding."""
    message: dict[str, Any] = {
        "name": schema_name,
        "title": schema_name,
        "summary": channel.summary,
        "contentType": "application/json",
        "payload": {"$ref": REF.format(model=schema_name)},
        "examples": [
            {"name": f"example{i + 1}", "payload": json.loads(raw)}
            for i, raw in enumerate(channel.examples())
        ],
    }
    if channel.max_bytes is not None:
        message["description"] = f"UTF-8 JSON of at most {channel.max_bytes:,} bytes."
    return message


def _channel(channel: Channel, schema_name: str) -> dict[str, Any]:
    names = re.findall(r"{(\w+)}", channel.topic)
    ends = (
        f"Published by {', '.join(channel.publishers)};"
        f" subscribed by {', '.join(channel.subscribers)}."
    )
    return {
        "address": channel.topic,
        "title": channel.name,
        "summary": channel.summary,
        "description": ends,
        "servers": [{"$ref": f"#/servers/{channel.broker}"}],
        "parameters": {name: PARAMETERS[name] for name in names},
        "messages": {schema_name: {"$ref": f"#/components/messages/{schema_name}"}},
    }


def _operations(channel: Channel, schema_name: str) -> dict[str, Any]:
    """One operation per vigil process at either end: ``gateway_receives_equipmentTelemetry``."""
    ops: dict[str, Any] = {}
    ends = [("send", "sends", p) for p in channel.publishers]
    ends += [("receive", "receives", s) for s in channel.subscribers]
    for action, verb, process in ends:
        if process not in VIGIL_PROCESSES:
            continue
        ops[f"{process}_{verb}_{channel.name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel.name}"},
            "summary": f"{process} {verb} {channel.summary[0].lower()}{channel.summary[1:]}",
            "messages": [{"$ref": f"#/channels/{channel.name}/messages/{schema_name}"}],
            "bindings": {
                "mqtt": {"qos": 1, "retain": channel.retained, "bindingVersion": MQTT_BINDING}
            },
        }
    return ops


SERVERS: dict[str, Any] = {
    "site": {
        "host": "{host}:{port}",
        "protocol": "secure-mqtt",
        "title": "Site broker",
        "summary": "The ward's broker: equipment publishes here, the gateway bridges it.",
        "description": (
            "TLS with a client certificate per device (CN = device id); the broker's ACL lets a"
            " device write only its own topics (`vigil broker config --kind site`). The demo's"
            " embedded broker (`vigil demo`) is plain MQTT on 127.0.0.1:18830, site `site-a`."
        ),
        "variables": {
            "host": {"default": "site-broker.hospital.example"},
            "port": {"default": "8883"},
        },
        "security": [{"$ref": "#/components/securitySchemes/clientCertificate"}],
    },
    "uplink": {
        "host": "{host}:{port}",
        "protocol": "secure-mqtt",
        "title": "Uplink broker",
        "summary": "The backbone's broker: gateways, ingest, rules and the service worker.",
        "description": (
            "TLS with a client certificate per process (CN = gateway id or vigil-ingest,"
            " vigil-rules, vigil-service); ACL from `vigil broker config --kind uplink`."
        ),
        "variables": {
            "host": {"default": "broker.vigil.example"},
            "port": {"default": "8883"},
        },
        "security": [{"$ref": "#/components/securitySchemes/clientCertificate"}],
    },
}


def document(channels: list[Channel] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``channels`` (default: every channel of the contract)."""
    channels = CHANNELS if channels is None else channels
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        schema, defs = model_schemas(channel.model)
        name = schema["title"]
        schema = constrain(schema)
        if name in REFINE:
            schema = REFINE[name](schema)
        for def_name, definition in {**defs, name: schema}.items():
            if schemas.setdefault(def_name, definition) != definition:
                raise ValueError(f"two models define schema {def_name!r} differently")
        if name not in messages:  # a model on two channels (presence, commands): one message
            messages[name] = _message(channel, name)
        doc_channels[channel.name] = _channel(channel, name)
        operations |= _operations(channel, name)
    doc = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": doc_channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "securitySchemes": {
                "clientCertificate": {
                    "type": "X509",
                    "description": "Mutual TLS: the certificate's CN is the client's identity.",
                }
            },
        },
    }
    # Plain JSON values, nothing shared: the YAML has no anchors and the JSON no surprises.
    plain: dict[str, Any] = json.loads(json.dumps(doc))
    return plain


def _info() -> dict[str, Any]:
    return {
        "title": "vigil MQTT contract",
        "version": DOCUMENT_VERSION,
        "description": (
            "Every MQTT channel of vigil, generated from the pydantic models in `contract/`"
            " (`vigil contract asyncapi`). The application described is the vigil platform"
            " (gateway, ingest, rules, service worker); equipment and notification receivers are"
            " its clients. Every message is QoS 1 and UTF-8 JSON; extra fields are refused"
            " except in notifications. What is refused and why: docs/contract.md; a worked"
            " example for equipment vendors: docs/integration.md."
        ),
        "license": {"name": "Apache-2.0"},
    }


# Models the document publishes, by schema name: for tests and tools that check payloads.
def models() -> dict[str, type[BaseModel]]:
    """Each channel's message model under the schema name the document gives it."""
    return {public_name(c.model): c.model for c in CHANNELS}
