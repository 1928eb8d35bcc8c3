"""A lot trace: every patient, device, reading span and ticket a production lot touched.

Exportable as CSV (one row per device) and as a FHIR collection Bundle (Devices with their UDI,
Patients, a reading-span Observation per device, a Task per ticket).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contract import KIND_METRICS, Reading
from infra.telemetry.base import Bucket
from service.fhir import codes, mapping
from service.fhir.bundles import collection
from service.fhir.ids import hashed_id
from service.model import Device, Patient, Site, Ticket
from service.store import ServiceStore
from service.traceability.model import UdiRecord

DAY_S = 86_400
_DAY_US = DAY_S * 1_000_000
# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class SpanSource(Protocol):
    """Readings and daily buckets of one device (the API's ``Telemetry`` has both)."""

    def readings(
        self, device_id: str, metric: str | None, since_us: int, until_us: int, limit: int
    ) -> list[Reading]:
        """Readings of one device in [since_us, until_us), oldest first."""
        ...

    def buckets(
        self, device_id: str, metric: str, bucket_s: int, since_us: int, until_us: int
    ) -> list[Bucket]:
        """Min/avg/max per bucket of one metric."""
        ...


@dataclass(frozen=True, slots=True)
class ReadingSpan:
    """When a device's readings start and end, and how many there are."""

    device_id: str
    first_us: int
    last_us: int
    count: int


@dataclass(frozen=True, slots=True)
class LotTrace:
    """Everything one lot touched, in the scope of whoever asked."""

    lot: str
    devices: tuple[Device, ...]
    udis: dict[str, UdiRecord]
    patients: tuple[Patient, ...]
    sites: tuple[Site, ...]
    spans: dict[str, ReadingSpan]
    tickets: tuple[Ticket, ...]


def reading_span(source: SpanSource, device: Device, until_us: int) -> ReadingSpan | None:
    """The span of ``device``'s readings before ``until_us``, or None if it has none."""
    first = source.readings(device.id, None, 0, until_us, 1)
    if not first:
        return None
    start, count, last_day = first[0].ts_us, 0, first[0].ts_us
    for metric in sorted(KIND_METRICS[device.kind]):
        for bucket in source.buckets(device.id, metric, DAY_S, start, until_us):
            count += bucket.samples
            last_day = max(last_day, bucket.bucket_start_us)
    tail = source.readings(device.id, None, last_day, min(until_us, last_day + _DAY_US), 10**6)
    return ReadingSpan(device.id, start, tail[-1].ts_us if tail else start, count)


def trace_lot(
    store: ServiceStore,
    source: SpanSource | None,
    lot: str,
    *,
    visible: Callable[[Device], bool],
    until_us: int,
) -> LotTrace:
    """Trace ``lot`` through the devices ``visible`` lets the caller see."""
    udis = {r.device_id: r for r in store.udis(lot)}
    devices = [d for d in store.devices() if (d.lot == lot or d.id in udis) and visible(d)]
    ids = [d.id for d in devices]
    patients = {
        d.patient: store.patient(d.patient) or Patient(id=d.patient, site_id=d.site_id)
        for d in devices
        if d.patient
    }
    sites = [s for s in (store.site(i) for i in sorted({d.site_id for d in devices})) if s]
    spans = {}
    if source is not None:
        for device in devices:
            if (span := reading_span(source, device, until_us)) is not None:
                spans[device.id] = span
    return LotTrace(
        lot=lot,
        devices=tuple(devices),
        udis={i: r for i, r in udis.items() if i in ids},
        patients=tuple(patients[k] for k in sorted(patients)),
        sites=tuple(sites),
        spans=spans,
        tickets=tuple(store.tickets(device_ids=ids)) if ids else (),
    )


CSV_COLUMNS = (
    "lot", "site_id", "hospital", "device_id", "kind", "model", "serial", "gtin", "expiry",
    "patient", "first_reading", "last_reading", "readings", "tickets", "open_tickets",
)  # fmt: skip


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(trace: LotTrace) -> str:
    """The trace as CSV, one row per device (cells that would run as formulas are quoted)."""
    hospitals = {s.id: s.hospital for s in trace.sites}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for device in trace.devices:
        udi, span = trace.udis.get(device.id), trace.spans.get(device.id)
        tickets = [t for t in trace.tickets if t.device_id == device.id]
        row: Sequence[object] = (
            trace.lot, device.site_id, hospitals.get(device.site_id, ""), device.id,
            device.kind, device.model, device.serial, udi.gtin if udi else "",
            udi.expiry if udi and udi.expiry else "", device.patient or "",
            mapping.instant(span.first_us) if span else "",
            mapping.instant(span.last_us) if span else "", span.count if span else 0,
            " ".join(t.id for t in tickets), sum(1 for t in tickets if t.is_open),
        )  # fmt: skip
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def span_observation(span: ReadingSpan, device: Device) -> dict[str, Any]:
    """A reading span as an Observation: when the device measured, and how often."""
    subject = (
        mapping.ref("Patient", device.patient)
        if device.patient
        else mapping.ref("Device", device.id)
    )
    concept = mapping.coding(codes.VIGIL_TRACE, "reading-span", "Span of stored readings")
    return {
        "resourceType": "Observation",
        "id": hashed_id("span-", device.id),
        "status": "final",
        "code": {"coding": [concept], "text": "Span of stored readings"},
        "subject": subject,
        "effectivePeriod": {
            "start": mapping.instant(span.first_us),
            "end": mapping.instant(span.last_us),
        },
        "valueInteger": span.count,
        "device": mapping.ref("Device", device.id),
    }


def to_bundle(trace: LotTrace, base: str) -> dict[str, Any]:
    """The trace as a FHIR collection Bundle."""
    sites = {s.id: s for s in trace.sites}
    by_id = {d.id: d for d in trace.devices}
    resources = [
        mapping.device_resource(d, udi=trace.udis.get(d.id), site=sites.get(d.site_id))
        for d in trace.devices
    ]
    resources += [mapping.patient_resource(p, site=sites.get(p.site_id)) for p in trace.patients]
    resources += [span_observation(s, by_id[i]) for i, s in sorted(trace.spans.items())]
    resources += [mapping.ticket_task(t, by_id.get(t.device_id)) for t in trace.tickets]
    return collection(resources, base)
