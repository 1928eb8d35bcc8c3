"""Asking a ticket's device to run a command: the one path the REST API and the console share.

Only the engineer assigned to the open ticket may send; the command must be in the catalogue,
its arguments valid and the device of a kind that answers it; the device must have reported
its presence (so the service knows its gateway). A repeated command id returns the stored
command instead of sending it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status

from contract import ContractError
from contract.commands import command_id_problem, command_spec, validate_args
from infra.time_us import us_from_datetime
from service import commands
from service.api.schemas import Principal, Role
from service.api.scope import actor, visible_device, visible_ticket
from service.commands_model import CommandRecord
from service.model import OPEN_STATES
from service.store import ServiceStore


@dataclass(frozen=True, slots=True)
class CommandAsk:
    """What the caller asks for: the command, its arguments, and the optional controls."""

    command: str
    args: Mapping[str, Any]
    command_id: str | None = None
    expires_in_s: int = 3600
    timeout_s: float | None = None


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def request_command(
    store: ServiceStore, who: Principal, ticket_id: str, ask: CommandAsk, now: datetime
) -> tuple[CommandRecord, bool]:
    """Queue the command on the ticket; (the stored command, whether it is new). HTTPException
    (403, 404, 409, 422) says why not."""
    ticket = visible_ticket(store, who, ticket_id)
    if who.role is not Role.ENGINEER or ticket.assignee != who.subject:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the engineer assigned may send")
    if ticket.state not in OPEN_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"ticket is {ticket.state}")
    device = visible_device(store, who, ticket.device_id)
    try:
        spec = command_spec(ask.command)
        args = validate_args(ask.command, dict(ask.args))
    except ContractError as exc:
        raise _unprocessable(str(exc)) from None
    if device.kind not in spec.kinds:
        raise _unprocessable(f"{spec.name} is not for a {device.kind}")
    presence = store.presence(device.id)
    if presence is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"no gateway has reported {device.id}: nowhere to send it"
        )
    command_id = ask.command_id or uuid.uuid4().hex
    assert command_id_problem(command_id) is None
    at_us = us_from_datetime(now)
    record = CommandRecord(
        command_id=command_id,
        ticket_id=ticket.id,
        device_id=device.id,
        gateway_id=presence.gateway_id,
        command=spec.name,
        args=args,
        requested_by=actor(who),
        requested_at_us=at_us,
        expires_at_us=at_us + ask.expires_in_s * 1_000_000,
        timeout_s=ask.timeout_s or spec.timeout_s,
    )
    try:
        return commands.issue(store, record)
    except commands.CommandConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
