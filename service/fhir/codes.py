"""Code systems and the metric table: each catalog metric's MDC, LOINC and UCUM codes.

Only codes checked against a source are used (docs/fhir.md cites each). A metric with no
published MDC or LOINC code carries the vigil code alone; its code system URI is vigil's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD = "http://hl7.org/fhir/uv/phd"
PHD_CATEGORY = f"{PHD}/CodeSystem/PhdObservationCategories"
PHD_NUMERIC = f"{PHD}/StructureDefinition/PhdNumericObservation"
PHD_BITS = f"{PHD}/StructureDefinition/PhdBitsEnumerationObservation"
PHD_CODED = f"{PHD}/StructureDefinition/PhdCodedEnumerationObservation"
PHD_DEVICE = f"{PHD}/StructureDefinition/PhdDevice"
PHG_DEVICE = f"{PHD}/StructureDefinition/PhgDevice"
# The PHD IG's system of the conditional-create identifier of every PHD observation.
PHD_OBSERVATION_ID = f"{PHD}/StructureDefinition/PhdBaseObservation"
GATEWAY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
CONTINUA_IDS = "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"
EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
BLUETOOTH = "http://hl7.org/fhir/sid/eui-48/bluetooth"
GS1_DI = "http://hl7.org/fhir/NamingSystem/gs1-di"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
ISSUE_TYPE = "http://hl7.org/fhir/issue-type"

# vigil's own code systems and identifier namespaces; publish them under your own domain.
VIGIL = "https://fhir.vigil.example"
VIGIL_METRIC = f"{VIGIL}/CodeSystem/metric"
VIGIL_STATUS_BIT = f"{VIGIL}/CodeSystem/patch-status-bit"
VIGIL_ERROR_CODE = f"{VIGIL}/CodeSystem/equipment-error"
VIGIL_RULE = f"{VIGIL}/CodeSystem/alert-rule"
VIGIL_SIGNAL = f"{VIGIL}/CodeSystem/rule-signal"
VIGIL_TICKET_STATE = f"{VIGIL}/CodeSystem/ticket-state"
VIGIL_TRACE = f"{VIGIL}/CodeSystem/trace"
VIGIL_DEVICE = f"{VIGIL}/sid/device"
VIGIL_GATEWAY = f"{VIGIL}/sid/gateway"
VIGIL_PATIENT = f"{VIGIL}/sid/patient"
VIGIL_SITE = f"{VIGIL}/sid/site"
VIGIL_TICKET = f"{VIGIL}/sid/ticket"
VIGIL_ALERT = f"{VIGIL}/sid/alert"

# MDC terms from the PHD IG's examples and profiles (HL7/phd, input/examples, input/fsh).
MDC_MOC_VMS_MDS_SIMP = ("65573", "MDC_MOC_VMS_MDS_SIMP")
MDC_MOC_VMS_MDS_AHD = ("531981", "MDC_MOC_VMS_MDS_AHD")
MDC_DEV_SPEC_PROFILE_GENERIC = ("528457", "MDC_DEV_SPEC_PROFILE_GENERIC")
MDC_ID_PROD_SPEC_FW = ("531976", "MDC_ID_PROD_SPEC_FW")
MDC_ID_PROD_SPEC_SW = ("531975", "MDC_ID_PROD_SPEC_SW")


class ValueKind(StrEnum):
    """How a metric's value is written: a Quantity, one boolean per bit, or a code."""

    QUANTITY = "quantity"
    BITS = "bits"
    CODE = "code"


@dataclass(frozen=True, slots=True)
class MetricCode:
    """How one catalog metric is coded in FHIR.

    ``ucum`` is None where UCUM has no unit (dBm): the Quantity then carries the unit text
    only. ``body_site`` tells two metrics with the same LOINC code apart (wound bed, skin).
    """

    metric: str
    display: str
    mdc: tuple[str, str] | None = None
    loinc: tuple[str, str] | None = None
    ucum: str | None = None
    unit: str = ""
    kind: ValueKind = ValueKind.QUANTITY
    vital_sign: bool = False
    body_site: str = ""


_SURFACE_TEMP = ("61008-9", "Body surface temperature")

METRIC_CODES: dict[str, MetricCode] = {
    c.metric: c
    for c in (
        MetricCode(
            "wound_ph",
            "Wound-bed pH",
            loinc=("2748-2", "pH of Body fluid"),
            ucum="[pH]",
            unit="pH",
            body_site="wound bed",
        ),
        MetricCode(
            "wound_temp",
            "Wound-bed temperature",
            loinc=_SURFACE_TEMP,
            ucum="Cel",
            unit="°C",
            vital_sign=True,
            body_site="wound bed",
        ),
        MetricCode(
            "skin_temp",
            "Peri-wound skin temperature",
            mdc=("150388", "MDC_TEMP_SKIN"),
            loinc=_SURFACE_TEMP,
            ucum="Cel",
            unit="°C",
            vital_sign=True,
            body_site="peri-wound skin",
        ),
        MetricCode("exudate", "Dressing exudate saturation", ucum="%", unit="%"),
        MetricCode(
            "battery",
            "Battery state of charge",
            mdc=("67996", "MDC_ATTR_VAL_BATT_CHARGE"),
            ucum="%",
            unit="%",
        ),
        MetricCode("status_flags", "Patch status bits", kind=ValueKind.BITS),
        MetricCode("rssi", "Received signal strength", unit="dBm"),
        MetricCode("mains_voltage", "Mains supply voltage (RMS)", ucum="V", unit="V"),
        MetricCode("ng_voltage", "Neutral-to-ground voltage (RMS)", ucum="V", unit="V"),
        MetricCode("probe_health", "Probe self-test health score", ucum="%", unit="%"),
        MetricCode("error_code", "Equipment error code", kind=ValueKind.CODE),
        MetricCode("usage_hours", "Cumulative hours in use", ucum="h", unit="h"),
    )
}

# The patch status bits (contract.catalog: 1 off skin, 2 sensor fault, 4 low battery).
STATUS_BITS: dict[int, str] = {0: "off-skin", 1: "sensor-fault", 2: "low-battery"}
STATUS_BIT_COUNT = 8


def status_bit_code(bit: int) -> str:
    """The code of bit ``bit`` (0 = least significant) of the status flags."""
    return STATUS_BITS.get(bit, f"bit-{bit}")


def metrics_for_code(system: str | None, code: str) -> set[str]:
    """The metrics a search token ``system|code`` (system None: any system) stands for."""
    found: set[str] = set()
    for spec in METRIC_CODES.values():
        codings = [(VIGIL_METRIC, spec.metric)]
        if spec.mdc:
            codings.append((MDC, spec.mdc[0]))
        if spec.loinc:
            codings.append((LOINC, spec.loinc[0]))
        if any(c == code and (system is None or s == system) for s, c in codings):
            found.add(spec.metric)
    return found
