"""The installed base as the caller sees it: devices, and one device's whole file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import CallerDep, Id, ReadingsDep, StoreDep
from service.api.schemas import DeviceFile, Inspection, PatientDeviceFile, Role
from service.api.scope import visible_device, visible_devices
from service.api.views import patient_ticket
from service.model import Device, Ticket, TicketKind, TicketState

MAX_PAGE = 1000
MAX_OFFSET = 1_000_000

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("")
def devices(
    who: CallerDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[Device]:
    """The devices in the caller's scope (by id), one page."""
    return visible_devices(store, who)[offset : offset + limit]


@router.get("/{device_id}")
def device(who: CallerDep, store: StoreDep, device_id: Id) -> Device:
    """One device (404 outside the caller's scope)."""
    return visible_device(store, who, device_id)


def _inspections(found: Device, tickets: list[Ticket]) -> list[Inspection]:
    """The recorded last inspection and every resolved preventive ticket, oldest first."""
    inspections = [Inspection(on=found.last_inspection)] if found.last_inspection else []
    inspections += [
        Inspection(on=done.date(), ticket_id=t.id)
        for t in tickets
        if t.kind is TicketKind.PREVENTIVE
        if (done := t.entered(TicketState.RESOLVED)) is not None
    ]
    return sorted(inspections, key=lambda i: i.on)


@router.get("/{device_id}/file")
def device_file(
    who: CallerDep, store: StoreDep, readings: ReadingsDep, device_id: Id
) -> DeviceFile | PatientDeviceFile:
    """One device, one file: the device, its site, tickets, alerts, inspections and parts.

    A patient gets their tickets in the patient view and no parts list.
    """
    found = visible_device(store, who, device_id)
    tickets = store.tickets(device_ids=[device_id])
    base = f"/devices/{device_id}"
    links = {
        "readings": f"{base}/readings",
        "alerts": f"{base}/alerts",
        "tickets": f"/tickets?device_id={device_id}",
    }
    site = store.site(found.site_id)
    alerts = readings.alerts(device_id)
    if who.role is Role.PATIENT:
        return PatientDeviceFile(
            device=found,
            site=site,
            tickets=[patient_ticket(t) for t in tickets],
            alerts=alerts,
            inspections=_inspections(found, tickets),
            links=links,
        )
    return DeviceFile(
        device=found,
        site=site,
        tickets=tickets,
        alerts=alerts,
        inspections=_inspections(found, tickets),
        parts=sorted({p for t in tickets for p in t.parts}),
        links=links,
    )
