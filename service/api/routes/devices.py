"""The installed base as the caller sees it: devices, and one device's whole file."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CallerDep, Id, ReadingsDep, StoreDep
from service.api.schemas import DeviceFile, Inspection
from service.api.scope import visible_device, visible_devices
from service.model import Device, TicketKind, TicketState

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("")
def devices(who: CallerDep, store: StoreDep) -> list[Device]:
    """Every device in the caller's scope."""
    return visible_devices(store, who)


@router.get("/{device_id}")
def device(who: CallerDep, store: StoreDep, device_id: Id) -> Device:
    """One device (404 outside the caller's scope)."""
    return visible_device(store, who, device_id)


@router.get("/{device_id}/file")
def device_file(
    who: CallerDep, store: StoreDep, readings: ReadingsDep, device_id: Id
) -> DeviceFile:
    """One device, one file: the device, its site, tickets, alerts, inspections and parts."""
    found = visible_device(store, who, device_id)
    tickets = store.tickets(device_ids=[device_id])
    inspections = [Inspection(on=found.last_inspection)] if found.last_inspection else []
    inspections += [
        Inspection(on=done.date(), ticket_id=t.id)
        for t in tickets
        if t.kind is TicketKind.PREVENTIVE
        if (done := t.entered(TicketState.RESOLVED)) is not None
    ]
    base = f"/devices/{device_id}"
    return DeviceFile(
        device=found,
        site=store.site(found.site_id),
        tickets=tickets,
        alerts=readings.alerts(device_id),
        inspections=sorted(inspections, key=lambda i: i.on),
        parts=sorted({p for t in tickets for p in t.parts}),
        links={
            "readings": f"{base}/readings",
            "alerts": f"{base}/alerts",
            "tickets": f"/tickets?device_id={device_id}",
        },
    )
