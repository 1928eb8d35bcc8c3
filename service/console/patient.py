"""The patient's page (home kit): their dressing's status in plain words, updates, request help.

A patient sees only their own page: any other patient id answers 404, the same as a missing
one (``service.api.scope``). Admins may open any patient's page, a hospital its own patients'.
"Request help" opens a manual ticket exactly as the API's one-click repair does (the device's
open manual ticket is reused, and new tickets count against the token's ticket budget), with
the patient's own words if they wrote any (``service.patient_messages``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import AfterValidator, ValidationError

from contract import Severity
from infra.time_us import datetime_from_us, us_from_datetime
from service import desk, quiet_hours
from service.api.context import ApiContext, Telemetry
from service.api.deps import ContextDep, Id, ReadingsDep
from service.api.schemas import Role
from service.api.scope import actor, not_found, visible_device, visible_patient
from service.api.text import ID_PATTERN, multi_line
from service.api.views import patient_ticket
from service.console.deps import SessionDep
from service.console.i18n import N_
from service.console.nav import NavItem
from service.console.render import page
from service.console.session import Session
from service.model import OPEN_STATES, Patient, TicketKind, Tier
from service.notifications import QuietHours
from service.patient_messages import MAX_CHARS, TooManyMessages, add_message
from service.store import ServiceStore
from service.store.queries import DeviceQuery, Scope, TicketQuery

router = APIRouter(prefix="/console")

NAV = (NavItem("/console/me", N_("My dressing"), frozenset({Role.PATIENT}), order=10),)

MAX_DEVICES = 20  # a home kit has a few
UPDATES = 10
SILENT_AFTER = timedelta(hours=1)
LOW_BATTERY = 20.0
NEARLY_FULL = 80.0
OFF_SKIN = 1  # status_flags bit


@dataclass(frozen=True, slots=True)
class Status:
    """What to tell the patient about one device: a message id and its tone."""

    message: str
    tone: str  # ok, attention, urgent


def _patient(store: ServiceStore, session: Session, patient_id: str) -> Patient:
    """The patient, or 404 when missing or not the caller's to see."""
    return visible_patient(store, session.who, patient_id)


def statuses(
    latest: dict[str, float], severities: list[Severity], seen: datetime | None, now: datetime
) -> list[Status]:
    """Plain-language statements about one dressing, most urgent first."""
    found: list[Status] = []
    if any(s >= Severity.CRITICAL for s in severities):
        found.append(
            Status(
                N_(
                    "Your dressing has noticed signs that need a nurse to look at "
                    "your wound. Your care team has been told."
                ),
                "urgent",
            )
        )
    elif severities:
        found.append(
            Status(
                N_("Your dressing noticed a change to keep an eye on. Your care team can see it."),
                "attention",
            )
        )
    if int(latest.get("status_flags", 0)) & OFF_SKIN:
        found.append(
            Status(
                N_("Your dressing seems to have come loose. Press it back gently or ask for help."),
                "attention",
            )
        )
    if latest.get("battery", 100.0) < LOW_BATTERY:
        found.append(Status(N_("The dressing's battery is low."), "attention"))
    if latest.get("exudate", 0.0) > NEARLY_FULL:
        found.append(
            Status(N_("The dressing is nearly full and may need changing soon."), "attention")
        )
    if seen is None:
        found.append(Status(N_("We have not heard from your dressing yet."), "attention"))
    elif now - seen > SILENT_AFTER:
        found.append(
            Status(
                N_(
                    "We have not heard from your dressing for a while. Check that "
                    "the home hub is plugged in."
                ),
                "attention",
            )
        )
    if not found:
        found.append(Status(N_("Your dressing is working normally."), "ok"))
    return found


@router.get("/me", include_in_schema=False)
def my_page(session: SessionDep) -> Response:
    """A patient's own page (others have no page of their own)."""
    if session.who.role is not Role.PATIENT or not session.who.subject:
        raise not_found()
    return RedirectResponse(f"/console/patients/{session.who.subject}", status.HTTP_303_SEE_OTHER)


@router.get("/patients/{patient_id}", include_in_schema=False)
def patient_page(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    readings: ReadingsDep,
    patient_id: Id,
    sent: bool = False,
    saved: bool = False,
) -> Response:
    """The patient's dressings, what they tell, updates on their requests, a help button."""
    patient = _patient(context.store, session, patient_id)
    scope = Scope(patient=patient.id)
    kits = _kits(context.store, readings, scope, context.clock())
    query = TicketQuery(scope=scope, sort="-updated", limit=UPDATES)
    updates = [patient_ticket(t) for t, _ in context.store.ticket_page(query)]
    quiet_chosen, quiet = quiet_hours.chosen(context.store, patient)
    values = {
        "patient": patient,
        "kits": kits,
        "updates": updates,
        "sent": sent,
        "saved": saved,
        "quiet_chosen": quiet_chosen,
        "quiet": quiet,
    }
    return page(request, "patient.html", values, session, zone=_zone(context, patient))


def _zone(context: ApiContext, patient: Patient) -> ZoneInfo:
    """The patient's hospital's time zone (their quiet hours are in it)."""
    return ZoneInfo(quiet_hours.zone_of(context.sla, patient))


def _kits(
    store: ServiceStore, readings: Telemetry, scope: Scope, now: datetime
) -> list[dict[str, Any]]:
    """Each of the patient's devices with what to tell about it and when it was last heard."""
    devices = store.device_page(DeviceQuery(scope=scope, limit=MAX_DEVICES))
    ids = [d.id for d in devices]
    latest: dict[str, dict[str, float]] = {i: {} for i in ids}
    seen: dict[str, datetime] = {}
    for r in readings.latest(ids, us_from_datetime(now - timedelta(days=7))):
        latest[r.device_id][r.metric] = r.value
        at = datetime_from_us(r.ts_us)
        seen[r.device_id] = max(seen.get(r.device_id, at), at)
    severities: dict[str, list[Severity]] = {i: [] for i in ids}
    for alert in readings.active_alerts(ids):
        severities[alert.device_id].append(alert.severity)
    return [
        {
            "device": d,
            "statuses": statuses(latest[d.id], severities[d.id], seen.get(d.id), now),
            "seen": seen.get(d.id),
        }
        for d in devices
    ]


# What the patient wrote: bounded, and no control characters but newlines and tabs (422).
Message = Annotated[str, Form(max_length=MAX_CHARS), AfterValidator(multi_line)]


@router.post("/patients/{patient_id}/help", include_in_schema=False)
def request_help(
    session: SessionDep,
    context: ContextDep,
    patient_id: Id,
    device_id: Annotated[str, Form(pattern=ID_PATTERN)],
    message: Message = "",
) -> Response:
    """Ask for help with one dressing: a manual ticket (the open one if there is one), with
    the patient's message if they wrote one."""
    patient = _patient(context.store, session, patient_id)
    if session.who.role not in (Role.PATIENT, Role.ADMIN, Role.HOSPITAL):
        raise not_found()
    device = visible_device(context.store, session.who, device_id)
    if device.patient != patient.id:
        raise not_found()
    store, now, who = context.store, context.clock(), actor(session.who)
    with store.atomic():
        store.lock_device(device.id)
        open_manual = [
            t for t in store.tickets(OPEN_STATES, [device.id]) if t.kind is TicketKind.MANUAL
        ]
        if open_manual:
            ticket = open_manual[0]
        else:
            context.limits.new_ticket(session.token_key)
            title = "help requested from the patient console"
            ticket = desk.open_ticket(store, device.id, Tier.GENERAL, title, who, _new_id(), now)
        if message.strip():
            try:
                add_message(store, ticket, message.strip(), who, now)
            except TooManyMessages as exc:
                raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc)) from None
    return RedirectResponse(f"/console/patients/{patient.id}?sent=1", status.HTTP_303_SEE_OTHER)


def _new_id() -> str:
    return uuid.uuid4().hex


@router.post("/patients/{patient_id}/quiet-hours", include_in_schema=False)
def set_quiet_hours(
    session: SessionDep,
    context: ContextDep,
    patient_id: Id,
    choice: Annotated[Literal["quiet", "any"], Form()],
    start: Annotated[time | None, Form()] = None,
    end: Annotated[time | None, Form()] = None,
) -> Response:
    """The patient's choice: hold non-urgent news from ``start`` to ``end`` (their hospital's
    local time), or send it at any time. Audited; applied to the next notifications."""
    patient = _patient(context.store, session, patient_id)
    if session.who.role not in (Role.PATIENT, Role.ADMIN, Role.HOSPITAL):
        raise not_found()
    quiet: QuietHours | None = None
    if choice == "quiet":
        if start is None or end is None:
            raise HTTPException(422, "quiet hours need a start and an end time")
        try:
            zone = quiet_hours.zone_of(context.sla, patient)
            quiet = QuietHours(start=start, end=end, timezone=zone)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors()[0]["msg"]) from None
    quiet_hours.choose(context.store, patient, quiet, actor(session.who), context.clock())
    return RedirectResponse(f"/console/patients/{patient.id}?saved=1", status.HTTP_303_SEE_OTHER)
