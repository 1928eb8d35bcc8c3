"""Remote diagnosis and presence: commands on a ticket, a device's presence, a gateway's state.

``POST /tickets/{id}/commands`` — the engineer assigned to an open ticket sends a catalogue
command to the ticket's device (202; the same ``command_id`` again: 200 and the same command;
the same id for another command: 409). It is queued, published to the device's gateway by the
service worker (retained: an offline gateway takes it when it reconnects), and its result lands
on the ticket: ``GET /tickets/{id}/commands``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import Field

from contract.commands import MAX_TIMEOUT_S
from infra.time_us import us_from_datetime
from service.api.command_requests import CommandAsk, request_command
from service.api.deps import CallerDep, Id, NowDep, StaffDep, StoreDep
from service.api.presence_views import gateway_view, presence_view
from service.api.requests import In
from service.api.schemas import GatewayView, PresenceView, Role
from service.api.scope import visible_device, visible_ticket
from service.commands_model import CommandRecord

router = APIRouter(tags=["remote diagnosis"])

MAX_EXPIRY_S = 7 * 86_400


class NewCommand(In):
    """A command from the catalogue (docs/contract.md) with its arguments."""

    command: Annotated[str, Field(min_length=1, max_length=64)]
    args: Annotated[dict[str, Any], Field(max_length=16)] = Field(default_factory=dict)
    # The idempotency key: send the same one again to retry without running it twice.
    command_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None
    expires_in_s: Annotated[int, Field(ge=10, le=MAX_EXPIRY_S)] = 3600
    timeout_s: Annotated[float | None, Field(gt=0, le=MAX_TIMEOUT_S)] = None


@router.post("/tickets/{ticket_id}/commands", status_code=status.HTTP_202_ACCEPTED)
def send_command(
    who: CallerDep,
    store: StoreDep,
    now: NowDep,
    ticket_id: Id,
    body: NewCommand,
    response: Response,
) -> CommandRecord:
    """Send a command to the ticket's device (only the engineer assigned to the open ticket)."""
    ask = CommandAsk(body.command, body.args, body.command_id, body.expires_in_s, body.timeout_s)
    stored, new = request_command(store, who, ticket_id, ask, now)
    if not new:
        response.status_code = status.HTTP_200_OK
    return stored


@router.get("/tickets/{ticket_id}/commands")
def ticket_commands(who: StaffDep, store: StoreDep, ticket_id: Id) -> list[CommandRecord]:
    """The ticket's commands and their results, oldest first."""
    ticket = visible_ticket(store, who, ticket_id)
    return store.ticket_commands(ticket.id)


@router.get("/tickets/{ticket_id}/commands/{command_id}")
def ticket_command(who: StaffDep, store: StoreDep, ticket_id: Id, command_id: Id) -> CommandRecord:
    """One command of the ticket."""
    ticket = visible_ticket(store, who, ticket_id)
    record = store.command(command_id)
    if record is None or record.ticket_id != ticket.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such command on this ticket")
    return record


@router.get("/devices/{device_id}/presence")
def device_presence(who: CallerDep, store: StoreDep, now: NowDep, device_id: Id) -> PresenceView:
    """Whether the device is online, since when (uptime), and its last time online."""
    visible_device(store, who, device_id)
    record = store.presence(device_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the device never reported its presence")
    return presence_view(record, us_from_datetime(now))


@router.get("/gateways/{gateway_id}")
def gateway(who: StaffDep, store: StoreDep, now: NowDep, gateway_id: Id) -> GatewayView:
    """A gateway's presence and latest health summary (staff only)."""
    if who.role is Role.HOSPITAL:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "hospital may not use this")
    view = gateway_view(store, gateway_id, us_from_datetime(now))
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such gateway has reported")
    return view
