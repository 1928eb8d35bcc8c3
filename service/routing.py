"""Who a ticket is for: wound alerts go to the clinical team, device faults to field service.

A smart dressing reports two kinds of trouble. Readings that say something about the *wound*
(pH, temperature, exudate, suspected infection, a dressing off the skin) are for the nurse on
duty at the issuing site and for the patient or carer; readings that say the *device* is failing
(sensor, battery, silence) and every fault of hospital equipment are for field service. Pure.
"""

from __future__ import annotations

from enum import StrEnum

from contract import DeviceKind
from service.model import Device, Ticket, TicketKind

# Rule-id prefixes of the dressing pack (rules/packs/dressings.yaml) that describe the wound.
CLINICAL_RULE_PREFIXES: tuple[str, ...] = (
    "dressing.ph.",
    "dressing.temp.rise",
    "dressing.temp.contralateral",
    "dressing.exudate.",
    "dressing.infection",
    "dressing.patch.off_skin",
)


class Route(StrEnum):
    """Which team a ticket's news goes to."""

    CLINICAL = "clinical"
    FIELD_SERVICE = "field_service"


def is_clinical_rule(rule_id: str | None) -> bool:
    """True when ``rule_id`` describes the wound rather than the device."""
    return rule_id is not None and rule_id.startswith(CLINICAL_RULE_PREFIXES)


def route_of(ticket: Ticket, device: Device | None) -> Route:
    """Clinical for wound alerts of a dressing; field service for everything else."""
    if (
        ticket.kind is TicketKind.ALERT
        and device is not None
        and device.kind is DeviceKind.PATCH
        and is_clinical_rule(ticket.rule_id)
    ):
        return Route.CLINICAL
    return Route.FIELD_SERVICE


def _wound_message(rule_id: str) -> str:
    if rule_id.startswith("dressing.infection"):
        return (
            "The readings from your dressing suggest your wound may be getting infected. "
            "Your nurse has been told and will contact you. If you feel feverish or unwell, "
            "or the wound hurts more, call your clinic now."
        )
    if rule_id.startswith("dressing.patch.off_skin"):
        return (
            "Your dressing may have come loose from your skin. Please check that it is "
            "stuck down; your nurse has been told and will help if it is not."
        )
    return (
        "The readings from your dressing show a change in your wound. Your nurse has been "
        "told and will check them; you do not need to do anything now."
    )


def patient_message(ticket: Ticket, device: Device | None, route: Route) -> str:
    """What the patient or carer reads: plain words, no jargon, no one else's data."""
    if route is Route.CLINICAL:
        return _wound_message(ticket.rule_id or "")
    what = "dressing" if device is not None and device.kind is DeviceKind.PATCH else "device"
    if ticket.assignee:
        return (
            f"Your {what} has a technical fault. Our service team is arranging a repair or "
            "replacement and will contact you."
        )
    return f"Your {what} has a technical fault. Our service team has been told."
