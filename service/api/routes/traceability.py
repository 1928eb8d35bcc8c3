"""UDI scanning and registration, and lot traces (JSON, CSV or a FHIR Bundle)."""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from contract import AlertEvent, DeviceKind
from infra.time_us import us_from_datetime
from service.api.deps import CallerDep, NowDep, ReadingsDep, SlaDep, StaffDep, StoreDep, require
from service.api.schemas import Out, Role
from service.api.scope import actor, not_found, scope_of, sees_device
from service.api.text import ApiDate, IdText, Label, SafeText, ShortText
from service.model import Device, Patient, Ticket
from service.store.queries import DeviceQuery
from service.traceability.gs1 import MAX_BARCODE_CHARS, Udi, UdiError, parse_udi
from service.traceability.lots import RegistrationRefused, register
from service.traceability.model import EUI48_PATTERN, EUI64_PATTERN, UdiRecord
from service.traceability.trace import LotTrace, to_bundle, to_csv, trace_lot

router = APIRouter(tags=["traceability"])


def _barcode_text(value: str) -> str:
    """``value`` unless it holds a control character other than the GS separator."""
    for char in value:
        category = unicodedata.category(char)
        if char != "\x1d" and category in ("Cc", "Cs"):
            raise ValueError(f"character U+{ord(char):04X} is not accepted in a barcode")
    return value


Barcode = Annotated[
    str, Field(min_length=1, max_length=MAX_BARCODE_CHARS), AfterValidator(_barcode_text)
]


class ScanIn(BaseModel):
    """A scanned or typed GS1 barcode."""

    model_config = ConfigDict(extra="forbid")

    barcode: Barcode


class RegisterIn(ScanIn):
    """A device to register from the barcode on its package."""

    device_id: IdText
    kind: DeviceKind
    model: Label
    site_id: IdText
    patient: IdText | None = None
    firmware: ShortText = ""
    installed_on: ApiDate | None = None
    ble_address: Annotated[str, Field(pattern=EUI48_PATTERN)] | None = None
    system_id: Annotated[str, Field(pattern=EUI64_PATTERN)] | None = None
    manufacturer: SafeText = ""


class ScanOut(Out):
    """What a barcode says, whether its lot may be used, and the devices of that lot."""

    gtin: str
    expiry: date | None
    lot: str
    serial: str
    hri: str
    expired: bool
    recalled: bool
    recall_reasons: list[str]
    devices: list[str]


class RegistrationOut(Out):
    """The registered device, its UDI, the alerts its lot raised and the tickets they opened."""

    device: Device
    udi: UdiRecord
    alerts: list[AlertEvent]
    tickets: list[str]


class SpanOut(Out):
    """When a device's readings start and end, and how many there are."""

    device_id: str
    first_us: int
    last_us: int
    count: int


class TraceOut(Out):
    """Every patient, device, reading span and ticket a lot touched (in the caller's scope)."""

    lot: str
    devices: list[Device]
    udis: list[UdiRecord]
    patients: list[Patient]
    spans: list[SpanOut]
    tickets: list[Ticket]


def _parsed(barcode: str) -> Udi:
    try:
        return parse_udi(barcode)
    except UdiError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.post("/udi/scan")
def scan(who: CallerDep, store: StoreDep, now: NowDep, body: ScanIn) -> ScanOut:
    """Read a UDI barcode: GTIN, expiry, lot, serial; expired or recalled; devices of the lot."""
    udi = _parsed(body.barcode)
    reasons = [
        r.reason or "recalled" for r in store.recalls() if udi.lot and r.covers(udi.lot, udi.gtin)
    ]
    lot_query = DeviceQuery(scope=scope_of(who), lot=udi.lot, limit=None)
    devices = store.device_ids(lot_query) if udi.lot else []
    return ScanOut(
        gtin=udi.gtin,
        expiry=udi.expiry,
        lot=udi.lot,
        serial=udi.serial,
        hri=udi.hri,
        expired=udi.expiry is not None and udi.expiry < now.date(),
        recalled=bool(reasons),
        recall_reasons=reasons,
        devices=devices,
    )


@router.post("/udi/register", status_code=status.HTTP_201_CREATED)
def register_device(
    who: CallerDep, store: StoreDep, sla: SlaDep, now: NowDep, body: RegisterIn
) -> RegistrationOut:
    """Register a device from its package barcode (admins; a hospital at its own site)."""
    require(who, Role.ADMIN, Role.HOSPITAL)
    if who.role is Role.HOSPITAL and body.site_id != who.subject:
        raise not_found()
    known = store.device(body.device_id)
    if known is not None and not sees_device(who, known):
        raise not_found()
    udi = _parsed(body.barcode)
    try:
        device, record = _registration(body, udi, known, now)
    except ValidationError as exc:  # a barcode field the installed base cannot hold
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:500]) from None
    try:
        done = register(store, device, record, actor=actor(who), at=now, sla=sla)
    except RegistrationRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return RegistrationOut(
        device=done.device,
        udi=done.udi,
        alerts=list(done.alerts),
        tickets=[t.id for t in done.tickets],
    )


def _registration(
    body: RegisterIn, udi: Udi, known: Device | None, now: datetime
) -> tuple[Device, UdiRecord]:
    """The device and UDI record a registration stores."""
    device = Device(
        id=body.device_id,
        kind=body.kind,
        model=body.model,
        serial=udi.serial or (known.serial if known else body.device_id),
        lot=udi.lot,
        firmware=body.firmware,
        installed_on=body.installed_on or now.date(),
        site_id=body.site_id,
        patient=body.patient,
    )
    record = UdiRecord(
        device_id=device.id,
        gtin=udi.gtin,
        expiry=udi.expiry,
        lot=udi.lot,
        serial=udi.serial,
        hri=udi.hri,
        ble_address=body.ble_address,
        system_id=body.system_id,
        manufacturer=body.manufacturer,
        registered_at=now,
    )
    return device, record


def _trace_out(trace: LotTrace) -> TraceOut:
    return TraceOut(
        lot=trace.lot,
        devices=list(trace.devices),
        udis=list(trace.udis.values()),
        patients=list(trace.patients),
        spans=[SpanOut(**dataclasses.asdict(s)) for s in trace.spans.values()],
        tickets=list(trace.tickets),
    )


@router.get("/trace/lot", response_model=None)
def trace(
    request: Request,
    who: StaffDep,
    store: StoreDep,
    readings: ReadingsDep,
    now: NowDep,
    lot: Annotated[SafeText, Query(min_length=1)],
    format: Literal["json", "csv", "fhir"] = "json",
) -> TraceOut | Response:
    """Every patient, device, reading span and ticket of ``lot``: JSON, CSV or a FHIR Bundle."""
    source = readings if readings.available else None
    found = trace_lot(
        store,
        source,
        lot,
        visible=lambda d: sees_device(who, d),
        until_us=us_from_datetime(now) + 1,
    )
    if format == "csv":
        headers = {"Content-Disposition": 'attachment; filename="lot-trace.csv"'}
        return Response(to_csv(found), media_type="text/csv", headers=headers)
    if format == "fhir":
        base = str(request.base_url).rstrip("/") + "/fhir"
        return Response(
            json.dumps(to_bundle(found, base), ensure_ascii=True),
            media_type="application/fhir+json",
        )
    return _trace_out(found)
