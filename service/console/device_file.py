"""The device file: one device with its site, tickets, alerts, audit events and telemetry plots.

Scoped like the API's ``/devices/{id}/file``: a device outside the caller's scope is the API's
404. Tickets are one SQL page (newest first); audit events are loaded on request (they walk the
log); plots fetch min/avg/max buckets from the reading store as JSON for uPlot.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from contract import KIND_METRICS, METRICS, DeviceKind
from infra.time_us import datetime_from_us, us_from_datetime
from service.api.context import Telemetry
from service.api.deps import HeavyDep, Id, NowDep, ReadingsDep, SlaDep, StoreDep
from service.api.scope import not_found, visible_device
from service.console.deps import StaffSession
from service.console.device_file_audit import PNG, events_of, signed_bytes
from service.console.dispatch_board import board_row, site_zone
from service.console.render import SECURITY_HEADERS, page
from service.console.session import Session
from service.model import TicketKind, TicketState
from service.store import ServiceStore
from service.store.queries import TicketQuery

router = APIRouter(prefix="/console/devices")
NAV = ()  # reached from tickets, boards and the installed base, not from the bar

TICKETS_SHOWN = 50
ALERTS_SHOWN = 50
ALERT_WINDOW = timedelta(days=30)
POINTS = 600  # buckets per plot: enough for a phone's width, few enough to send at once
WINDOWS = {"6h": timedelta(hours=6), "24h": timedelta(days=1), "7d": timedelta(days=7)}
Window = Annotated[str, Query(pattern="^(6h|24h|7d)$")]


@router.get("/{device_id}", response_class=HTMLResponse)
def device_file(
    request: Request,
    session: StaffSession,
    store: StoreDep,
    readings: ReadingsDep,
    sla: SlaDep,
    now: NowDep,
    device_id: Id,
) -> HTMLResponse:
    """The device file page."""
    device = visible_device(store, session.who, device_id)
    site = store.site(device.site_id)
    query = TicketQuery(device_id=device_id, sort="-opened", limit=TICKETS_SHOWN + 1)
    found = [t for t, _ in store.ticket_page(query)]
    since = us_from_datetime(now - ALERT_WINDOW)
    # Oldest first from the store: the window keeps the page to recent ones, shown newest first.
    recent = readings.alert_page([device_id], None, ALERTS_SHOWN, since_us=since)
    active = readings.active_alerts([device_id])
    tickets = found[:TICKETS_SHOWN]
    inspections = [device.last_inspection] if device.last_inspection else []
    inspections += [
        done.date()
        for t in tickets
        if t.kind is TicketKind.PREVENTIVE
        if (done := t.entered(TicketState.RESOLVED)) is not None
    ]
    values = {
        "device": device,
        "site": site,
        "rows": [board_row(t, now, sla) for t in tickets],
        "more_tickets": len(found) > TICKETS_SHOWN,
        "alerts": [(datetime_from_us(a.at_us), a) for a in reversed(recent)],
        "active_alerts": active,
        "inspections": sorted(inspections),
        "parts": sorted({p for t in tickets for p in t.parts}),
        "metrics": _metrics(readings, device.id, device.kind, now),
        "windows": list(WINDOWS),
        "telemetry": readings.available,
    }
    zone = site_zone(sla, device.site_id)
    return page(request, "device_file.html", values, session, zone=zone)


def _metrics(readings: Telemetry, device_id: str, kind: DeviceKind, now: datetime) -> list[str]:
    """The metrics a device of ``kind`` reports, those it sent lately first (the plot's
    default is the first)."""
    since = us_from_datetime(now - WINDOWS["7d"])
    recent = {r.metric for r in readings.latest([device_id], since)}
    return sorted(KIND_METRICS[kind], key=lambda m: (m not in recent, m))


@router.get("/{device_id}/audit", response_class=HTMLResponse)
def device_audit(
    request: Request, session: StaffSession, store: StoreDep, heavy: HeavyDep, device_id: Id
) -> HTMLResponse:
    """The audit events of the device and its tickets (an htmx fragment, or a page)."""
    visible_device(store, session.who, device_id)
    query = TicketQuery(device_id=device_id, limit=None)
    subjects = {device_id, *(t.id for t, _ in store.ticket_page(query))}
    with heavy:  # walks the whole log: a few at a time
        events = events_of(store, subjects)
    fragment = bool(request.headers.get("HX-Request"))
    template = "device_audit_fragment.html" if fragment else "device_audit.html"
    return page(request, template, {"events": events, "device_id": device_id}, session)


@router.get("/{device_id}/signatures/{ticket_id}.png")
def signature_image(
    session: StaffSession, store: StoreDep, heavy: HeavyDep, device_id: Id, ticket_id: Id
) -> Response:
    """The customer's drawn signature of one of the device's tickets, served only while its
    SHA-256 is still the one the ticket's e-signature records."""
    kept = _signed(session, store, heavy, device_id, ticket_id)
    if kept[1] != PNG:
        raise not_found()
    return Response(kept[0], media_type=PNG, headers={"Cache-Control": "no-store"})


@router.get("/{device_id}/signatures/{ticket_id}")
def signature(
    session: StaffSession, store: StoreDep, heavy: HeavyDep, device_id: Id, ticket_id: Id
) -> Response:
    """What the customer signed one of the device's tickets with: the drawn PNG or the typed
    attestation (JSON), served only while its SHA-256 is the e-signature's."""
    body, media_type = _signed(session, store, heavy, device_id, ticket_id)
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


def _signed(
    session: Session,
    store: ServiceStore,
    heavy: threading.BoundedSemaphore,
    device_id: str,
    ticket_id: str,
) -> tuple[bytes, str]:
    visible_device(store, session.who, device_id)
    ticket = store.ticket(ticket_id)
    if ticket is None or ticket.device_id != device_id or ticket.signature is None:
        raise not_found()
    with heavy:  # walks the log
        kept = signed_bytes(store, ticket_id, ticket.signature.report_sha256)
    if kept is None:
        raise not_found()
    return kept


@router.get("/{device_id}/series")
def device_series(
    session: StaffSession,
    store: StoreDep,
    readings: ReadingsDep,
    now: NowDep,
    device_id: Id,
    metric: Annotated[str, Query(max_length=64)],
    window: Window = "24h",
) -> JSONResponse:
    """Min/avg/max buckets of one metric over a window, as uPlot's column arrays."""
    device = visible_device(store, session.who, device_id)
    if metric not in KIND_METRICS[device.kind]:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a {device.kind.value} does not report {metric!r}",
        )
    if not readings.available:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no reading store configured")
    span = WINDOWS[window]
    bucket_s = max(1, int(span.total_seconds()) // POINTS)
    start, end = us_from_datetime(now - span), us_from_datetime(now)
    buckets = readings.buckets(device_id, metric, bucket_s, start, end)
    body: dict[str, Any] = {
        "metric": metric,
        "unit": METRICS[metric].unit,
        "t": [b.bucket_start_us / 1e6 for b in buckets],
        "min": [b.min for b in buckets],
        "avg": [b.avg for b in buckets],
        "max": [b.max for b in buckets],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", **_json_headers()})


def _json_headers() -> dict[str, str]:
    return {k: v for k, v in SECURITY_HEADERS.items() if k == "X-Content-Type-Options"}
