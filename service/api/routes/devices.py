"""The installed base as the caller sees it: devices, and one device's whole file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from contract import DeviceKind
from infra.time_us import us_from_datetime
from service.api.deps import CallerDep, Id, NowDep, ReadingsDep, StoreDep
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, Offset, decode_cursor, page
from service.api.presence_views import gateway_view, presence_view
from service.api.schemas import DeviceFile, Inspection, PatientDeviceFile, Role
from service.api.scope import scope_of, visible_device
from service.api.text import ID_PATTERN
from service.api.views import patient_ticket
from service.model import Device, Ticket, TicketKind, TicketState
from service.store.queries import DeviceQuery

router = APIRouter(prefix="/devices", tags=["devices"])

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("")
def devices(
    who: CallerDep,
    store: StoreDep,
    request: Request,
    response: Response,
    site_id: IdFilter = None,
    kind: DeviceKind | None = None,
    ward: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> list[Device]:
    """The devices in the caller's scope (by id), optionally of one site, kind or ward; a page.

    More pages: follow the ``Link: rel="next"`` header (or pass its ``X-Next-Cursor``).
    """
    after = decode_cursor(cursor, "id", (str,))
    query = DeviceQuery(
        scope=scope_of(who),
        site_id=site_id,
        kind=kind,
        ward=ward,
        after=None if after is None else after[0],
        limit=limit + 1,
        offset=offset,
    )
    found = [(d, (d.id,)) for d in store.device_page(query)]
    return page(found, limit, "id", request, response)


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
    who: CallerDep, store: StoreDep, readings: ReadingsDep, now: NowDep, device_id: Id
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
    now_us = us_from_datetime(now)
    presence = store.presence(device_id)
    return DeviceFile(
        device=found,
        site=site,
        tickets=tickets,
        alerts=alerts,
        inspections=_inspections(found, tickets),
        parts=sorted({p for t in tickets for p in t.parts}),
        links=links,
        presence=None if presence is None else presence_view(presence, now_us),
        gateway=None if presence is None else gateway_view(store, presence.gateway_id, now_us),
    )
