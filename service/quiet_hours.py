"""Quiet hours a patient chooses on their own page, over the notify file's default.

A patient at home decides when non-urgent news may wake them (the notify file's
``patient_quiet_hours`` is the hospital's default, and IT edits that file; a patient cannot).
What they choose is kept in the service store (``put_quiet_hours``, ``patient/<id>``; None:
"send at any time") and applied when the outbox rows of their notifications are made: only
the recipients of those notifications are looked up, in one query. Urgent news is never held.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from service.model import OutboxItem, Patient
from service.notifications import Notification, NotifyConfig, QuietHours, outbox_items
from service.sla import SlaConfig
from service.store import ServiceStore


def with_choices(
    store: ServiceStore, config: NotifyConfig, notes: Iterable[Notification]
) -> NotifyConfig:
    """``config`` with the quiet hours the patients among ``notes``' recipients chose."""
    keys = sorted({f"{n.role}/{n.subject}" for n in notes if n.role == "patient"})
    chosen = store.quiet_hours_chosen(keys) if keys else {}
    if not chosen:
        return config
    recipients = dict(config.recipients)
    for key, quiet in chosen.items():
        role, subject = key.split("/", 1)
        update = {"quiet_hours": quiet, "quiet_hours_chosen": True}
        recipients[key] = config.prefs(role, subject).model_copy(update=update)
    return config.model_copy(update={"recipients": recipients})


def notify_items(
    store: ServiceStore, notes: Iterable[Notification], config: NotifyConfig, now: datetime
) -> list[OutboxItem]:
    """``outbox_items`` with the patients' own choice of quiet hours."""
    listed = list(notes)
    return outbox_items(listed, with_choices(store, config, listed), now)


def recipient(patient: Patient) -> str:
    """The notification recipient a patient is (``patient/<id>``)."""
    return f"patient/{patient.id}"


def zone_of(sla: SlaConfig, patient: Patient) -> str:
    """The time zone a patient's quiet hours are in: their hospital's."""
    calendar = sla.site_calendar(patient.site_id)
    return calendar.timezone if calendar is not None else "UTC"


def chosen(store: ServiceStore, patient: Patient) -> tuple[bool, QuietHours | None]:
    """Whether the patient has chosen, and what (None: no quiet hours)."""
    found = store.quiet_hours_chosen([recipient(patient)])
    return recipient(patient) in found, found.get(recipient(patient))


def choose(
    store: ServiceStore, patient: Patient, quiet: QuietHours | None, actor: str, at: datetime
) -> None:
    """Keep the patient's choice and audit it (``patient.quiet_hours``), in one transaction."""
    shown = "none" if quiet is None else f"{quiet.start:%H:%M}-{quiet.end:%H:%M} {quiet.timezone}"
    with store.atomic():
        store.put_quiet_hours(recipient(patient), quiet, at)
        store.append_audit(at, actor, "patient.quiet_hours", patient.id, {"quiet_hours": shown})
