"""Installed-base forms: the posted fields checked by the API's own request models.

A form is turned into the API's ``SiteIn`` / ``DeviceIn`` / ``EngineerIn`` / ``PatientIn`` (same
bounds, same patterns), so the console accepts exactly what the REST API accepts; what fails is
reported per field for the form to show next to its input, never as a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from contract import DeviceKind
from service.api.requests import DeviceIn, EngineerIn, PatientIn, SiteIn
from service.console.i18n import N_
from service.model import Device, Engineer, Patient, Site
from service.store import ServiceStore

Item = Site | Device | Engineer | Patient
MAX_FIELD = 10_000  # characters of one posted field worth looking at


@dataclass(frozen=True, slots=True)
class Field:
    """One input of a form: its name, label (msgid), input type and whether it is required."""

    name: str
    label: str
    kind: str = "text"  # text | date | number | select | checkboxes | textarea
    required: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of installed-base record: its form and how it is read and written."""

    name: str
    title: str
    fields: tuple[Field, ...]
    model: type[BaseModel]
    to_body: Callable[[Mapping[str, Any]], dict[str, Any]]
    to_form: Callable[[Any], dict[str, str]]


@dataclass
class Outcome:
    """A checked form: the record, or the errors by field name (``""``: the whole form)."""

    item: Item | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _opt(value: str) -> str | None:
    return value or None


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[\s,;]+", value) if w]


def _site_body(f: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": f["id"], "hospital": f["hospital"], "region": f["region"]}


def _device_body(f: Mapping[str, Any]) -> dict[str, Any]:
    location = None
    if f["ward"] or f["room"] or f["bed"]:
        location = {"ward": f["ward"], "room": f["room"], "bed": f["bed"]}
    return {
        "id": f["id"],
        "kind": f["kind"],
        "model": f["model"],
        "serial": f["serial"],
        "lot": f["lot"],
        "firmware": f["firmware"],
        "installed_on": f["installed_on"],
        "warranty_end": _opt(f["warranty_end"]),
        "service_contract": _opt(f["service_contract"]),
        "site_id": f["site_id"],
        "location": location,
        "patient": _opt(f["patient"]),
        "last_inspection": _opt(f["last_inspection"]),
    }


def _engineer_body(f: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": f["id"],
        "name": f["name"],
        "region": f["region"],
        "skills": f["skills"],
        "capacity": f["capacity"] or "5",
        "supervisor": _opt(f["supervisor"]),
    }


def _patient_body(f: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": f["id"], "site_id": f["site_id"], "kit": _words(f["kit"])}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _device_form(d: Device) -> dict[str, str]:
    loc = d.location
    return {
        **{k: _text(v) for k, v in d.model_dump(mode="json").items() if k != "location"},
        "ward": loc.ward if loc else "",
        "room": loc.room if loc else "",
        "bed": loc.bed if loc else "",
    }


def _engineer_form(e: Engineer) -> dict[str, str]:
    return {
        "id": e.id,
        "name": e.name,
        "region": e.region,
        "skills": " ".join(sorted(e.skills)),
        "capacity": str(e.capacity),
        "supervisor": e.supervisor or "",
    }


KINDS: dict[str, Kind] = {
    "sites": Kind(
        "sites",
        N_("Site"),
        (
            Field("id", N_("Id"), required=True),
            Field("hospital", N_("Hospital"), required=True),
            Field("region", N_("Region"), required=True),
        ),
        SiteIn,
        _site_body,
        lambda s: {k: _text(v) for k, v in s.model_dump(mode="json").items()},
    ),
    "devices": Kind(
        "devices",
        N_("Device"),
        (
            Field("id", N_("Id"), required=True),
            Field("kind", N_("Kind"), "select", True, tuple(k.value for k in DeviceKind)),
            Field("model", N_("Model"), required=True),
            Field("serial", N_("Serial number"), required=True),
            Field("lot", N_("Lot")),
            Field("firmware", N_("Firmware")),
            Field("installed_on", N_("Installed on"), "date", True),
            Field("warranty_end", N_("Warranty ends"), "date"),
            Field("service_contract", N_("Service contract")),
            Field("site_id", N_("Site id"), required=True),
            Field("ward", N_("Ward")),
            Field("room", N_("Room")),
            Field("bed", N_("Bed")),
            Field("patient", N_("Patient (home kit)")),
            Field("last_inspection", N_("Last inspection"), "date"),
        ),
        DeviceIn,
        _device_body,
        _device_form,
    ),
    "engineers": Kind(
        "engineers",
        N_("Engineer"),
        (
            Field("id", N_("Id"), required=True),
            Field("name", N_("Name"), required=True),
            Field("region", N_("Region"), required=True),
            Field("skills", N_("Skills"), "checkboxes", choices=tuple(k.value for k in DeviceKind)),
            Field("capacity", N_("Capacity (tickets held at once)"), "number"),
            Field("supervisor", N_("Supervisor (engineer id)")),
        ),
        EngineerIn,
        _engineer_body,
        _engineer_form,
    ),
    "patients": Kind(
        "patients",
        N_("Patient"),
        (
            Field("id", N_("Pseudonym"), required=True),
            Field("site_id", N_("Site id"), required=True),
            Field("kit", N_("Kit devices"), "textarea", hint=N_("device ids, separated by spaces")),
        ),
        PatientIn,
        _patient_body,
        lambda p: {"id": p.id, "site_id": p.site_id, "kit": " ".join(p.kit)},
    ),
}


def posted(
    kind: Kind, form: Mapping[str, str], multi: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """The kind's fields from a posted form, each trimmed and bounded (missing: empty)."""
    values: dict[str, Any] = {}
    for f in kind.fields:
        if f.kind == "checkboxes":
            values[f.name] = [v[:64] for v in multi.get(f.name, ())][:20]
        else:
            values[f.name] = form.get(f.name, "")[:MAX_FIELD].strip()
    return values


def _field_of(loc: tuple[int | str, ...], names: set[str]) -> str:
    """Which form field a validation error is about (``""`` when none fits)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "location" and len(parts) > 1:
        return parts[1]
    return parts[0] if parts and parts[0] in names else ""


def check(kind: Kind, values: Mapping[str, Any]) -> Outcome:
    """The record ``values`` describe, or why not, field by field."""
    names = {f.name for f in kind.fields}
    errors = {f.name: N_("required") for f in kind.fields if f.required and not values.get(f.name)}
    if errors:
        return Outcome(errors=errors)
    try:
        body = kind.model.model_validate(kind.to_body(values))
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            errors.setdefault(_field_of(error["loc"], names), str(error["msg"]))
        return Outcome(errors=errors)
    domain = getattr(body, "domain")  # noqa: B009 - every *In model has domain()
    item = domain()
    assert isinstance(item, Site | Device | Engineer | Patient)
    return Outcome(item=item)


def existing(store: ServiceStore, kind: str, key: str) -> Item | None:
    """The stored record of ``kind`` with id ``key``, if any."""
    match kind:
        case "sites":
            return store.site(key)
        case "devices":
            return store.device(key)
        case "engineers":
            return store.engineer(key)
        case "patients":
            return store.patient(key)
    return None


def references(store: ServiceStore, item: Item) -> dict[str, str]:
    """Errors for ids that must name an existing record (a device's or patient's site)."""
    if isinstance(item, Device | Patient) and store.site(item.site_id) is None:
        return {"site_id": N_("no such site")}
    return {}
