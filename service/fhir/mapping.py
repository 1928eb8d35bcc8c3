"""vigil → FHIR R4: pure functions from stored readings, devices, patients, alerts and tickets.

Shaped after the HL7 Personal Health Device IG (docs/fhir.md): MDC and LOINC codes, UCUM
units, the PHD category, the gateway extension, the conditional-create identifier. References
are relative (``Device/<id>``); a transaction bundle rewrites those it carries to urn:uuids.
Every function returns plain JSON (dicts); ``service.fhir.validate`` checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contract import AlertEvent, AlertTransition, DeviceKind, Reading, Severity
from contract.catalog import PATCH_METRICS, metric_spec
from service.fhir import codes
from service.fhir.codes import METRIC_CODES, MetricCode, ValueKind
from service.fhir.ids import (
    fhir_id,
    hashed_id,
    observation_id,
    parse_reading_identifier,
    reading_identifier,
)
from service.model import Device, Patient, Site, Ticket, TicketState
from service.traceability.model import UdiRecord

Json = dict[str, Any]

SEVERITY = {Severity.CRITICAL: "high", Severity.WARNING: "moderate", Severity.INFO: "low"}
TASK_STATUS = {
    TicketState.OPEN: "requested",
    TicketState.DISPATCHED: "received",
    TicketState.ACCEPTED: "accepted",
    TicketState.ON_SITE: "in-progress",
    TicketState.WAITING_FOR_CUSTOMER: "on-hold",
    TicketState.RESOLVED: "completed",
    TicketState.SIGNED_OFF: "completed",
    TicketState.FOLLOWED_UP: "completed",
    TicketState.CLOSED: "completed",
}


def instant(ts_us: int) -> str:
    """A FHIR instant/dateTime with microseconds, in UTC."""
    at = datetime.fromtimestamp(ts_us // 1_000_000, tz=UTC).replace(microsecond=ts_us % 1_000_000)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def datetime_text(at: datetime) -> str:
    """A FHIR dateTime of an aware datetime, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> int:
    """µs since the epoch of a FHIR dateTime with a time zone."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def ref(kind: str, vigil_id: str) -> Json:
    """A relative reference to the resource of ``kind`` for vigil's ``vigil_id``."""
    return {"reference": f"{kind}/{fhir_id(vigil_id)}"}


def gateway_ref(gateway_id: str) -> Json:
    """The reference to the PHG Device of ``gateway_id``."""
    return ref("Device", gateway_resource_key(gateway_id))


def gateway_resource_key(gateway_id: str) -> str:
    """The vigil-side key of a gateway's Device (gateways and devices share Device ids)."""
    return f"phg-{gateway_id}"


def coding(system: str, code: str, display: str = "") -> Json:
    """One Coding."""
    return (
        {"system": system, "code": code, "display": display}
        if display
        else {
            "system": system,
            "code": code,
        }
    )


def metric_concept(spec: MetricCode) -> Json:
    """The code of a metric: MDC and LOINC where they exist, and always vigil's own."""
    found = []
    if spec.mdc:
        found.append(coding(codes.MDC, *spec.mdc))
    if spec.loinc:
        found.append(coding(codes.LOINC, *spec.loinc))
    found.append(coding(codes.VIGIL_METRIC, spec.metric, spec.display))
    return {"coding": found, "text": spec.display}


def _subject(reading: Reading, device: Device | None) -> Json:
    if device is not None and device.patient:
        return ref("Patient", device.patient)
    return ref("Device", reading.device_id)


def _categories(spec: MetricCode, reading: Reading, device: Device | None) -> list[Json]:
    found = []
    on_patient = device is not None and bool(device.patient)
    if spec.vital_sign and on_patient:
        found.append({"coding": [coding(codes.OBSERVATION_CATEGORY, "vital-signs")]})
    is_patch = device.kind is DeviceKind.PATCH if device else reading.metric in PATCH_METRICS
    if is_patch:
        found.append({"coding": [coding(codes.PHD_CATEGORY, "phd")]})
    return found


def _number(value: float, integral: bool) -> int | float:
    return int(value) if integral else value


def quantity(value: float, spec: MetricCode, integral: bool = False) -> Json:
    """A Quantity of ``value`` in the metric's unit (UCUM-coded where UCUM has the unit)."""
    found: Json = {"value": _number(value, integral), "unit": spec.unit}
    if spec.ucum is not None:
        found |= {"system": codes.UCUM, "code": spec.ucum}
    return found


def _value(reading: Reading, spec: MetricCode) -> Json:
    integral = metric_spec(reading.metric).integral
    if spec.kind is ValueKind.QUANTITY:
        return {"valueQuantity": quantity(reading.value, spec, integral)}
    number = int(reading.value)
    if spec.kind is ValueKind.CODE:
        label = "no error" if number == 0 else f"error {number}"
        concept = {"coding": [coding(codes.VIGIL_ERROR_CODE, str(number), label)], "text": label}
        return {"valueCodeableConcept": concept}
    bits = [
        {
            "code": {"coding": [coding(codes.VIGIL_STATUS_BIT, codes.status_bit_code(bit))]},
            "valueBoolean": bool(number >> bit & 1),
        }
        for bit in range(codes.STATUS_BIT_COUNT)
    ]
    return {"component": bits}


def observation(
    reading: Reading, *, device: Device | None = None, gateway_id: str | None = None
) -> Json:
    """The Observation of one stored reading; ``device`` names the patient it belongs to."""
    spec = METRIC_CODES[reading.metric]
    found: Json = {"resourceType": "Observation", "id": observation_id(reading)}
    if gateway_id is not None:
        found["extension"] = [
            {"url": codes.GATEWAY_EXTENSION, "valueReference": gateway_ref(gateway_id)}
        ]
    found |= {
        "identifier": [{"system": codes.PHD_OBSERVATION_ID, "value": reading_identifier(reading)}],
        "status": "final",
    }
    if categories := _categories(spec, reading, device):
        found["category"] = categories
    found |= {
        "code": metric_concept(spec),
        "subject": _subject(reading, device),
        "effectiveDateTime": instant(reading.ts_us),
    }
    if spec.body_site:
        found["bodySite"] = {"text": spec.body_site}
    found["device"] = ref("Device", reading.device_id)
    return found | _value(reading, spec)


def reading_of(resource: Json) -> Reading:
    """The reading an ``observation`` was made from (its identifier and value); ValueError."""
    ids = [i for i in resource.get("identifier", []) if i.get("system") == codes.PHD_OBSERVATION_ID]
    if len(ids) != 1:
        raise ValueError("the Observation has no single vigil reading identifier")
    device_id, metric, ts_us, seq = parse_reading_identifier(ids[0]["value"])
    spec = METRIC_CODES[metric]
    value: float
    if spec.kind is ValueKind.QUANTITY:
        value = float(resource["valueQuantity"]["value"])
    elif spec.kind is ValueKind.CODE:
        value = float(int(resource["valueCodeableConcept"]["coding"][0]["code"]))
    else:
        value = float(
            sum(1 << bit for bit, c in enumerate(resource["component"]) if c["valueBoolean"])
        )
    return Reading(device_id, metric, value, metric_spec(metric).unit, ts_us, seq)


def _identifiers(device: Device, udi: UdiRecord | None) -> list[Json]:
    found: list[Json] = [{"system": codes.VIGIL_DEVICE, "value": device.id}]
    if udi is not None and udi.system_id:
        sysid = coding(codes.CONTINUA_IDS, "SYSID", "IEEE 11073 System Identifier")
        found.append({"type": {"coding": [sysid]}, "system": codes.EUI64, "value": udi.system_id})
    if udi is not None and udi.ble_address:
        btmac = coding(codes.CONTINUA_IDS, "BTMAC", "Bluetooth MAC address")
        found.append(
            {"type": {"coding": [btmac]}, "system": codes.BLUETOOTH, "value": udi.ble_address}
        )
    return found


def _udi_carrier(udi: UdiRecord) -> Json:
    return {
        "deviceIdentifier": udi.gtin,
        "issuer": codes.GS1_DI,
        "carrierHRF": udi.hri,
        "entryType": "barcode",
    }


def device_resource(
    device: Device, *, udi: UdiRecord | None = None, site: Site | None = None
) -> Json:
    """The Device of a patch or piece of equipment, with its UDI when it was registered."""
    found: Json = {
        "resourceType": "Device",
        "id": fhir_id(device.id),
        "identifier": _identifiers(device, udi),
    }
    if udi is not None:
        found["udiCarrier"] = [_udi_carrier(udi)]
    found["status"] = "active"
    if udi is not None and udi.manufacturer:
        found["manufacturer"] = udi.manufacturer
    if udi is not None and udi.expiry is not None:
        found["expirationDate"] = udi.expiry.isoformat()
    if lot := device.lot or (udi.lot if udi else ""):
        found["lotNumber"] = lot
    found |= {"serialNumber": device.serial, "modelNumber": device.model}
    kind_coding = [coding(codes.MDC, *codes.MDC_MOC_VMS_MDS_SIMP)]
    found["type"] = {
        "coding": kind_coding if device.kind is DeviceKind.PATCH else [],
        "text": str(device.kind),
    }
    if not found["type"]["coding"]:
        del found["type"]["coding"]
    if device.firmware:
        fw = {"coding": [coding(codes.MDC, *codes.MDC_ID_PROD_SPEC_FW)], "text": "Firmware"}
        found["version"] = [{"type": fw, "value": device.firmware}]
    if device.patient:
        found["patient"] = ref("Patient", device.patient)
    owner: Json = {"identifier": {"system": codes.VIGIL_SITE, "value": device.site_id}}
    if site is not None:
        owner["display"] = site.hospital
    return found | {"owner": owner}


def gateway_resource(gateway_id: str, software: str) -> Json:
    """The Device of the gateway, as the personal health gateway (PHG) the readings came by."""
    sw = {"coding": [coding(codes.MDC, *codes.MDC_ID_PROD_SPEC_SW)], "text": "Software"}
    return {
        "resourceType": "Device",
        "id": fhir_id(gateway_resource_key(gateway_id)),
        "identifier": [{"system": codes.VIGIL_GATEWAY, "value": gateway_id}],
        "status": "active",
        "manufacturer": "vigil",
        "modelNumber": "vigil gateway",
        "type": {
            "coding": [coding(codes.MDC, *codes.MDC_MOC_VMS_MDS_AHD)],
            "text": "Personal health gateway",
        },
        "version": [{"type": sw, "value": software}],
    }


def patient_resource(patient: Patient, *, site: Site | None = None) -> Json:
    """The pseudonymous Patient: an identifier and the managing site, nothing identifying."""
    organisation: Json = {"identifier": {"system": codes.VIGIL_SITE, "value": patient.site_id}}
    if site is not None:
        organisation["display"] = site.hospital
    pseudonymised = coding(codes.OBSERVATION_VALUE, "PSEUDED", "pseudonymized")
    return {
        "resourceType": "Patient",
        "id": fhir_id(patient.id),
        "meta": {"security": [pseudonymised]},
        "identifier": [{"system": codes.VIGIL_PATIENT, "value": patient.id}],
        "active": True,
        "managingOrganization": organisation,
    }


def alert_key(alert: AlertEvent) -> str:
    """The identifier value of an alert: device, rule and the instant it was raised."""
    return f"{alert.device_id}.{alert.rule_id}.{alert.at_us}"


def _signal_unit(kind: str, spec: MetricCode) -> MetricCode:
    """The unit of a rule's signal: the metric's, K for a temperature difference, per hour for
    a rate, 1 for a z-score. UCUM cannot combine its special units (Cel, [pH]) with others."""
    if kind == "zscore":
        return MetricCode(spec.metric, spec.display, ucum="1", unit="1")
    if kind not in ("rate", "delta_baseline", "delta_reference"):
        return spec
    if spec.ucum == "Cel":
        base = "K"
    elif spec.ucum == "[pH]":
        base = None
    else:
        base = spec.ucum
    if kind != "rate":
        return MetricCode(spec.metric, spec.display, ucum=base, unit=base or spec.unit)
    ucum = f"{base}/h" if base else None
    return MetricCode(spec.metric, spec.display, ucum=ucum, unit=ucum or f"{spec.unit}/h")


def signal_observation(
    alert: AlertEvent, evidence: Sequence[Reading], device: Device | None = None
) -> Json | None:
    """The value a rule computed from readings (its signal), derived from their Observations."""
    metric, signal = alert.evidence.get("metric"), alert.evidence.get("signal")
    if metric not in METRIC_CODES or not isinstance(signal, int | float):
        return None
    kind = str(alert.evidence.get("kind", ""))
    spec = _signal_unit(kind, METRIC_CODES[str(metric)])
    concept = coding(codes.VIGIL_SIGNAL, kind or "signal", f"{alert.rule_id} signal")
    return {
        "resourceType": "Observation",
        "id": hashed_id("s-", alert_key(alert)),
        "identifier": [{"system": codes.VIGIL_ALERT, "value": f"{alert_key(alert)}.signal"}],
        "status": "final",
        "code": {"coding": [concept], "text": f"{alert.rule_id} signal ({metric})"},
        "subject": _subject(Reading(alert.device_id, str(metric), 0.0, "", 1, 0), device),
        "effectiveDateTime": instant(alert.at_us),
        "valueQuantity": quantity(float(signal), spec),
        "device": ref("Device", alert.device_id),
        "derivedFrom": [{"reference": f"Observation/{observation_id(r)}"} for r in evidence],
    }


def detected_issue(
    raised: AlertEvent,
    *,
    later: Sequence[AlertEvent] = (),
    evidence: Sequence[Reading] = (),
    signal: Json | None = None,
    device: Device | None = None,
) -> Json:
    """The DetectedIssue of one alert: raised, then acknowledged or cleared by ``later`` events.

    Its evidence are the Observations of the readings behind it, or the signal the rule
    computed from them (which is derived from those Observations).
    """
    cleared = next((e for e in later if e.transition is AlertTransition.CLEARED), None)
    found: Json = {
        "resourceType": "DetectedIssue",
        "id": hashed_id("a-", alert_key(raised)),
        "identifier": [{"system": codes.VIGIL_ALERT, "value": alert_key(raised)}],
        "status": "final" if cleared else "preliminary",
        "code": {"coding": [coding(codes.VIGIL_RULE, raised.rule_id)], "text": raised.rule_id},
        "severity": SEVERITY[raised.severity],
    }
    if device is not None and device.patient:
        found["patient"] = ref("Patient", device.patient)
    if cleared is not None:
        found["identifiedPeriod"] = {
            "start": instant(raised.at_us),
            "end": instant(cleared.at_us),
        }
    else:
        found["identifiedDateTime"] = instant(raised.at_us)
    found["implicated"] = [ref("Device", raised.device_id)]
    details = [{"reference": f"Observation/{signal['id']}"}] if signal else []
    details += [{"reference": f"Observation/{observation_id(r)}"} for r in evidence]
    if details:
        found["evidence"] = [{"detail": details}]
    if raised.message:
        found["detail"] = raised.message
    mitigations = [
        {
            "action": {"text": f"{e.transition.value} by {e.evidence.get('acknowledged_by', '?')}"},
            "date": instant(e.at_us),
        }
        for e in later
        if e.transition is AlertTransition.ACKNOWLEDGED
    ]
    if mitigations:
        found["mitigation"] = mitigations
    return found


def ticket_task(ticket: Ticket, device: Device | None = None) -> Json:
    """The Task of a service ticket: what is to be done to which device, and how far it got."""
    state = coding(codes.VIGIL_TICKET_STATE, str(ticket.state))
    found: Json = {
        "resourceType": "Task",
        "id": fhir_id(ticket.id),
        "identifier": [{"system": codes.VIGIL_TICKET, "value": ticket.id}],
        "status": TASK_STATUS[ticket.state],
        "businessStatus": {"coding": [state], "text": str(ticket.state)},
        "intent": "order",
        "priority": "urgent" if ticket.tier == "urgent" else "routine",
        "description": ticket.title or f"{ticket.kind} ticket",
        "focus": ref("Device", ticket.device_id),
    }
    if device is not None and device.patient:
        found["for"] = ref("Patient", device.patient)
    return found | {
        "authoredOn": datetime_text(ticket.opened_at),
        "lastModified": datetime_text(ticket.last_change),
    }
