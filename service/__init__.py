"""vigil's service backbone: installed base, tickets, SLA, dispatch, audit, schedules and KPIs.

The decision modules are pure (time is passed in); ``store``, ``desk``, ``notify`` and ``api``
are the edges that touch a database or the network. Import ``service.api`` / ``service.notify``
explicitly: they pull in FastAPI and httpx, which the pure core does not need.
"""

from service.audit import AuditEntry, verify
from service.business_hours import BusinessCalendar
from service.dispatch import Assignment, NoEngineer, dispatch
from service.escalation import Escalation, escalate, escalations_due
from service.intake import open_or_append
from service.lifecycle import TransitionError, transition
from service.model import (
    Delivery,
    Device,
    Engineer,
    Evidence,
    Location,
    Patient,
    Signature,
    Site,
    Ticket,
    TicketKind,
    TicketState,
    Tier,
    new_ticket,
)
from service.schedules import ScheduleConfig, due_tasks
from service.sla import SlaConfig, TierPolicy, breaches_between, sla_status, tier_for
from service.store import ServiceStore, SqliteStore

__all__ = [
    "Assignment",
    "AuditEntry",
    "BusinessCalendar",
    "Delivery",
    "Device",
    "Engineer",
    "Escalation",
    "Evidence",
    "Location",
    "NoEngineer",
    "Patient",
    "ScheduleConfig",
    "ServiceStore",
    "Signature",
    "Site",
    "SlaConfig",
    "SqliteStore",
    "Ticket",
    "TicketKind",
    "TicketState",
    "Tier",
    "TierPolicy",
    "TransitionError",
    "breaches_between",
    "dispatch",
    "due_tasks",
    "escalate",
    "escalations_due",
    "new_ticket",
    "open_or_append",
    "sla_status",
    "tier_for",
    "transition",
    "verify",
]
