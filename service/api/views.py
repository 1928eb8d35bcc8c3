"""Each role's view of a ticket: staff (admin, engineer, hospital) the whole ticket, a patient
the patient view without staff fields (see ``PatientTicket``)."""

from __future__ import annotations

from service.api.schemas import PatientStateChange, PatientTicket, Principal, Role
from service.model import StateChange, Ticket

TicketView = Ticket | PatientTicket


def patient_ticket(ticket: Ticket) -> PatientTicket:
    """``ticket`` as its patient sees it."""
    return PatientTicket(
        id=ticket.id,
        device_id=ticket.device_id,
        kind=ticket.kind,
        tier=ticket.tier,
        state=ticket.state,
        opened_at=ticket.opened_at,
        title=ticket.title,
        evidence=ticket.evidence,
        history=tuple(patient_change(c) for c in ticket.history),
        signed_at=ticket.signature.at if ticket.signature else None,
        satisfaction=ticket.satisfaction,
    )


def patient_change(change: StateChange) -> PatientStateChange:
    """A state change without the engineer's note."""
    return PatientStateChange(state=change.state, at=change.at)


def ticket_for(who: Principal, ticket: Ticket) -> TicketView:
    """``ticket`` as ``who`` may see it."""
    return patient_ticket(ticket) if who.role is Role.PATIENT else ticket


def history_for(who: Principal, ticket: Ticket) -> list[StateChange] | list[PatientStateChange]:
    """The state changes of ``ticket`` as ``who`` may see them."""
    if who.role is Role.PATIENT:
        return [patient_change(c) for c in ticket.history]
    return list(ticket.history)
