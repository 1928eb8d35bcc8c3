"""A patient's own notification choice, for the apps that serve them: their quiet hours.

The same choice as the patient's console page (``service.quiet_hours``): hold non-urgent news
from ``start`` to ``end`` in their hospital's time zone, or (``quiet_hours: null``) send it at
any time. The patient themselves, their hospital and admins may read and set it; anyone else
gets the API's one 404 (engineers a 403: a patient's evenings are none of the field's business).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Self

from fastapi import APIRouter
from pydantic import BeforeValidator, model_validator

from service import quiet_hours
from service.api.deps import CallerDep, Id, NowDep, SlaDep, StoreDep, require
from service.api.requests import In
from service.api.schemas import Out, Principal, Role
from service.api.scope import actor, visible_patient
from service.model import Patient
from service.notifications import QuietHours
from service.store import ServiceStore

router = APIRouter(prefix="/patients", tags=["patients"])


def _text(value: object) -> object:
    """A time of day as text ("22:00"), not a number of seconds since midnight."""
    if not isinstance(value, str):
        raise ValueError("a time of day as text, such as 22:00")
    return value


TimeOfDay = Annotated[time, BeforeValidator(_text)]


class QuietSpan(In):
    """A daily span of the hospital's local time; ``22:00``-``07:00`` wraps midnight."""

    start: TimeOfDay
    end: TimeOfDay

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.start == self.end:
            raise ValueError("quiet hours must start and end at different times")
        return self


class QuietHoursChoice(In):
    """What the patient chooses: a span, or null for "send at any time"."""

    quiet_hours: QuietSpan | None


class QuietHoursView(Out):
    """The patient's choice (``chosen`` false: none yet, their hospital's setting applies)."""

    chosen: bool
    quiet_hours: QuietHours | None


def _patient(store: ServiceStore, who: Principal, patient_id: str) -> Patient:
    require(who, Role.PATIENT, Role.HOSPITAL, Role.ADMIN)
    return visible_patient(store, who, patient_id)


@router.get("/{patient_id}/quiet-hours")
def get_quiet_hours(who: CallerDep, store: StoreDep, patient_id: Id) -> QuietHoursView:
    """The patient's quiet hours as they chose them."""
    chosen, quiet = quiet_hours.chosen(store, _patient(store, who, patient_id))
    return QuietHoursView(chosen=chosen, quiet_hours=quiet)


@router.put("/{patient_id}/quiet-hours")
def put_quiet_hours(
    who: CallerDep,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    patient_id: Id,
    body: QuietHoursChoice,
) -> QuietHoursView:
    """Set the patient's quiet hours (audited as ``patient.quiet_hours``)."""
    patient = _patient(store, who, patient_id)
    span = body.quiet_hours
    zone = quiet_hours.zone_of(sla, patient)
    quiet = None if span is None else QuietHours(start=span.start, end=span.end, timezone=zone)
    quiet_hours.choose(store, patient, quiet, actor(who), now)
    return QuietHoursView(chosen=True, quiet_hours=quiet)
