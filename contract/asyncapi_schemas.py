"""The AsyncAPI document's message schemas: each model's JSON Schema plus its validators' rules.

``model_json_schema()`` says what pydantic's types say; what a model checks in validators (ids,
64-bit integers, the timestamp range, the metric catalog, a command's arguments) is added here
from the same constants and tables the validators use, so the schema refuses what the code does.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from contract.catalog import KIND_METRICS, METRICS
from contract.codec import MAX_READINGS_PER_BATCH
from contract.equipment import MAX_METRICS
from contract.validation import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_FUTURE_S,
    ID_RESERVED,
    INT64_MAX,
    MAX_ID_LENGTH,
    MAX_TS_US,
)

REF = "#/components/schemas/{model}"


def model_schemas(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's schema and the definitions it refers to, refs pointing at components."""
    schema = copy.deepcopy(model.model_json_schema(ref_template=REF))
    defs = schema.pop("$defs", {})
    schema["title"] = public_name(model)
    return schema, defs


def public_name(model: type[BaseModel]) -> str:
    """``_WireBatchV1`` is published as ``WireBatchV1``: the underscore is Python privacy."""
    return model.__name__.lstrip("_")


# Constraints the validators enforce, stated in the schema from the validators' constants.
_ID = {
    "description": (
        f"1-{MAX_ID_LENGTH} printable characters (no control, format or unassigned character),"
        f" without {' '.join(ID_RESERVED)}: ids become MQTT topic levels."
    ),
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    # What id_problem refuses that a regular expression can say: MQTT's reserved characters
    # and the C0 controls (the description names the rest).
    # "not contains" rather than an anchored class: Python's `$` also matches before a "\n".
    "not": {"pattern": f"[{ID_RESERVED}\\u0000-\\u001f\\u007f]"},
}
# JSON Schema's "integer" admits 15.0; vigil's strict parser does not: write integers bare.
_INT64 = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_TS_US = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_TS_US,
    "description": (
        "Microseconds since the Unix epoch, UTC. The gateway accepts only times in a window"
        f" around its clock: by default at most {DEFAULT_MAX_AGE_S // 86_400} days old and at"
        f" most {DEFAULT_MAX_FUTURE_S} s ahead ([gateway] max_reading_age_s, max_clock_skew_s)."
    ),
}
# A command id becomes a topic level too; "not" for the same reason as in _ID.
_COMMAND_ID = {"minLength": 1, "maxLength": 64, "not": {"pattern": "[^A-Za-z0-9._-]"}}
FIELD_RULES: dict[str, dict[str, Any]] = {
    "device_id": _ID,
    "gateway_id": _ID,
    "id": _ID,
    "command_id": _COMMAND_ID,
    "seq": {
        **_INT64,
        "description": (
            "The device's own counter: increase it with every message. An integer"
            " written without a fraction (15, not 15.0)."
        ),
    },
    "batch_seq": _INT64,
    "ts_us": _TS_US,
}


def constrain(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the validators' rules to the top-level properties they apply to (columns: items)."""
    for name, prop in schema.get("properties", {}).items():
        rule = FIELD_RULES.get(name)
        if rule is None:
            continue
        if prop.get("type") == "array":
            prop["items"] = {**prop.get("items", {}), **rule}
            prop.pop("title", None)
        else:
            prop.update(rule)
    return schema


def metric_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """The equipment message's metrics: catalog units and ranges, and what each kind reports."""
    metrics = schema["properties"]["metrics"]
    metrics["minProperties"] = 1
    metrics["maxProperties"] = MAX_METRICS
    metrics["properties"] = {
        spec.name: {
            "type": "number",
            **({"multipleOf": 1} if spec.integral else {}),
            "minimum": spec.low,
            "maximum": spec.high,
            "description": f"{spec.description} [{spec.unit}]",
        }
        for spec in METRICS.values()
    }
    metrics["additionalProperties"] = False
    metrics["description"] = (
        "Metric name → value, in the catalog's unit. An unknown metric, a metric the device's"
        " kind does not report, or a value out of range is refused alone (dead-lettered); the"
        " message's other readings are kept."
    )
    schema["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": kind.value}}},
            "then": {
                "properties": {"metrics": {"propertyNames": {"enum": sorted(KIND_METRICS[kind])}}}
            },
        }
        for kind in KIND_METRICS
    ]
    return schema


def batch_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """The batch's columns: equally long, at most MAX_READINGS_PER_BATCH readings."""
    for name in ("device_id", "metric", "value", "unit", "ts_us", "seq"):
        schema["properties"][name]["maxItems"] = MAX_READINGS_PER_BATCH
    schema["properties"]["metric"]["items"] = {"type": "string", "enum": sorted(METRICS)}
    schema["description"] = (
        "Readings as columns: the i-th reading is (device_id[i], metric[i], value[i], unit[i],"
        " ts_us[i], seq[i]); every column has the same length (not expressible in JSON Schema;"
        " a batch whose columns differ is refused whole)."
    )
    return schema


def command_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """A command's ``args``: the catalogue's argument model of the command named."""
    catalogue = importlib.import_module("contract.commands").CATALOGUE
    schema["allOf"] = [
        {
            "if": {"properties": {"command": {"const": name.value}}},
            "then": {"properties": {"args": model_schemas(spec.args)[0]}},
        }
        for name, spec in catalogue.items()
    ]
    return schema


# Per-model refinements beyond the generic field rules.
REFINE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "EquipmentMessage": metric_rules,
    "WireBatchV1": batch_rules,
    "CommandRequest": command_rules,
}
