"""Remote diagnosis on the engineer's ticket page: which catalogue commands the caller may send
to the ticket's device (sent through ``service.api.command_requests``, as the REST API does),
and the ticket's commands with their results."""

from __future__ import annotations

from typing import Any

from contract.commands import CATALOGUE
from service.api.schemas import Principal, Role
from service.model import OPEN_STATES, Device, Ticket
from service.store import ServiceStore


def remote_diagnosis(
    store: ServiceStore, who: Principal, ticket: Ticket, device: Device | None
) -> dict[str, Any]:
    """The ticket page's remote-diagnosis values: the commands this caller may send to the
    device (none unless assigned and open) and the ticket's commands so far."""
    may_send = (
        device is not None
        and who.role is Role.ENGINEER
        and ticket.assignee == who.subject
        and ticket.state in OPEN_STATES
    )
    sendable = [
        (str(spec.name), spec.summary)
        for spec in CATALOGUE.values()
        if may_send and device is not None and device.kind in spec.kinds
    ]
    return {"sendable": sendable, "commands": store.ticket_commands(ticket.id)}
