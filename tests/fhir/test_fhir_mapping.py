"""vigil → FHIR mapping: every catalog metric round-trips, and every resource validates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import METRICS, AlertEvent, AlertTransition, Reading, Severity
from contract.validation import MAX_TS_US
from service.fhir import codes, mapping
from service.fhir.bundles import Conditional, transaction
from service.fhir.codes import METRIC_CODES
from service.fhir.ids import FHIR_ID, fhir_id, parse_reading_identifier, reading_identifier
from service.fhir.validate import FhirInvalid, parsed, validate
from service.model import Patient, Site, TicketKind, Tier, new_ticket
from service.traceability.model import UdiRecord
from tests.fhir.world import patch

EXAMPLES = Path(__file__).parent / "examples"
KIT = patch("kit_1:a", "s1", "p:9", "LOT-A")


def test_every_catalog_metric_has_a_coding() -> None:
    assert set(METRIC_CODES) == set(METRICS)
    for spec in METRIC_CODES.values():
        if spec.kind is codes.ValueKind.QUANTITY and spec.ucum is None:
            assert spec.metric == "rssi"  # UCUM has no dBm


def _reading(metric: str) -> st.SearchStrategy[Reading]:
    spec = METRICS[metric]
    values = (
        st.integers(int(spec.low), int(spec.high)).map(float)
        if spec.integral
        else st.floats(spec.low, spec.high, allow_nan=False)
    )
    ids = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
    return st.builds(
        Reading,
        ids,
        st.just(metric),
        values,
        st.just(spec.unit),
        st.integers(1, MAX_TS_US),
        st.integers(0, 2**63 - 1),
    )


@pytest.mark.parametrize("metric", sorted(METRICS))
@settings(max_examples=40)
@given(data=st.data())
def test_each_metric_round_trips_through_a_valid_observation(metric: str, data: Any) -> None:
    reading = data.draw(_reading(metric))
    device = data.draw(st.sampled_from([None, KIT]))
    resource = mapping.observation(reading, device=device, gateway_id="gw-1")
    model = parsed(resource)  # fhir.resources R4B
    assert FHIR_ID.match(resource["id"])
    back = mapping.reading_of(json.loads(model.model_dump_json()))
    assert back == reading


def test_observation_codes_units_and_categories() -> None:
    temp = mapping.observation(
        Reading("kit_1:a", "skin_temp", 33.25, "degC", 1_700_000_000_000_001, 4), device=KIT
    )
    assert [c["code"] for c in temp["code"]["coding"]] == ["150388", "61008-9", "skin_temp"]
    assert temp["valueQuantity"] == {
        "value": 33.25, "unit": "°C", "system": codes.UCUM, "code": "Cel"
    }  # fmt: skip
    assert temp["effectiveDateTime"] == "2023-11-14T22:13:20.000001Z"
    categories = [c["coding"][0]["code"] for c in temp["category"]]
    assert categories == ["vital-signs", "phd"]
    assert temp["subject"] == {"reference": "Patient/x-" + fhir_id("p:9")[2:]}
    ph = mapping.observation(Reading("kit_1:a", "wound_ph", 7.4, "pH", 1, 0), device=KIT)
    assert ph["valueQuantity"]["code"] == "[pH]" and "vital-signs" not in json.dumps(ph)
    flags = mapping.observation(Reading("kit_1:a", "status_flags", 5.0, "flags", 1, 0))
    bits = [c["valueBoolean"] for c in flags["component"]]
    assert bits == [True, False, True, False, False, False, False, False]
    error = mapping.observation(Reading("us-1", "error_code", 0.0, "code", 1, 0))
    assert error["valueCodeableConcept"]["text"] == "no error"
    assert error["subject"] == {"reference": "Device/us-1"}


def test_reading_identifiers_survive_dots_in_device_ids() -> None:
    reading = Reading("a.b.c", "battery", 50.0, "%", 17, 3)
    assert parse_reading_identifier(reading_identifier(reading)) == ("a.b.c", "battery", 17, 3)
    with pytest.raises(ValueError):
        parse_reading_identifier("a.nometric.1.2")


def _udi() -> UdiRecord:
    return UdiRecord(
        device_id=KIT.id,
        gtin="09506000134376",
        expiry=date(2027, 1, 31),
        lot="LOT-A",
        serial="SN1",
        hri="(01)09506000134376(17)270131(10)LOT-A(21)SN1",
        ble_address="00-1C-05-FF-E8-74",
        system_id="74-E8-FF-FE-FF-05-1C-00",
        manufacturer="Acme Dressings",
        registered_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_device_gateway_and_patient_resources_validate() -> None:
    site = Site(id="s1", hospital="Hospital One", region="north")
    device = mapping.device_resource(KIT, udi=_udi(), site=site)
    validate(device)
    kinds = [i.get("type", {}).get("coding", [{}])[0].get("code") for i in device["identifier"]]
    assert kinds == [None, "SYSID", "BTMAC"]
    assert device["udiCarrier"][0]["deviceIdentifier"] == "09506000134376"
    assert device["expirationDate"] == "2027-01-31"
    assert device["version"][0]["value"] == "2.1.0"
    gateway = mapping.gateway_resource("gw-1", "0.1.0")
    validate(gateway)
    assert gateway["type"]["coding"][0]["code"] == "531981"
    validate(mapping.patient_resource(Patient(id="p:9", site_id="s1"), site=site))


def test_an_alert_is_a_detected_issue_with_a_derived_signal() -> None:
    evidence = [Reading(KIT.id, "wound_temp", 38.0 + i, "degC", 1_000 + i, i) for i in range(3)]
    raised = AlertEvent(
        device_id=KIT.id,
        rule_id="wound_temp_rise",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=2_000,
        message="temperature rising",
        evidence={"metric": "wound_temp", "signal": 1.5, "kind": "rate"},
    )
    later = [
        raised.model_copy(
            update={"transition": AlertTransition.ACKNOWLEDGED, "at_us": 3_000,
                    "evidence": {"acknowledged_by": "nurse"}}
        ),
        raised.model_copy(update={"transition": AlertTransition.CLEARED, "at_us": 4_000}),
    ]  # fmt: skip
    signal = mapping.signal_observation(raised, evidence, KIT)
    assert signal is not None
    validate(signal)
    assert signal["valueQuantity"]["code"] == "K/h"
    assert len(signal["derivedFrom"]) == 3
    issue = mapping.detected_issue(
        raised, later=later, evidence=evidence, signal=signal, device=KIT
    )
    validate(issue)
    assert issue["severity"] == "high" and issue["status"] == "final"
    assert issue["evidence"][0]["detail"][0]["reference"] == f"Observation/{signal['id']}"
    assert issue["mitigation"][0]["action"]["text"] == "acknowledged by nurse"


def test_a_ticket_is_a_task() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    ticket = new_ticket("T-1", KIT.id, Tier.URGENT, at, kind=TicketKind.ALERT, title="recall")
    task = mapping.ticket_task(ticket, KIT)
    validate(task)
    assert (task["status"], task["priority"]) == ("requested", "urgent")


def test_transaction_entries_reference_each_other_by_urn() -> None:
    reading = Reading(KIT.id, "battery", 80.0, "%", 5, 1)
    obs = mapping.observation(reading, device=KIT)
    device = mapping.device_resource(KIT)
    bundle = transaction(
        [
            Conditional(device, codes.VIGIL_DEVICE, KIT.id),
            Conditional(obs, codes.PHD_OBSERVATION_ID, reading_identifier(reading)),
        ]
    )
    validate(bundle)
    device_entry, obs_entry = bundle["entry"]
    assert obs_entry["resource"]["device"]["reference"] == device_entry["fullUrl"]
    assert obs_entry["resource"]["subject"]["reference"].startswith("Patient/")
    assert "id" not in obs_entry["resource"]
    assert obs_entry["request"]["ifNoneExist"] == (
        f"identifier={codes.PHD_OBSERVATION_ID}|kit_1:a.battery.5.1"
    )
    assert transaction([Conditional(device, codes.VIGIL_DEVICE, KIT.id)]) == transaction(
        [Conditional(device, codes.VIGIL_DEVICE, KIT.id)]
    )


def test_invalid_resources_are_refused() -> None:
    with pytest.raises(FhirInvalid):
        validate({"resourceType": "Observation", "status": "final"})  # no code
    with pytest.raises(FhirInvalid):
        validate({"resourceType": "NoSuchThing"})
    with pytest.raises(FhirInvalid):
        validate({"resourceType": "Observation", "code": {"text": "x"}, "status": "final",
                  "effectiveDateTime": "yesterday"})  # fmt: skip


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_phd_ig_examples_parse_with_the_same_models(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    model = parsed(resource)
    assert model.get_resource_type() == resource["resourceType"]
