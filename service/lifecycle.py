"""Ticket lifecycle: the only way a ticket changes state, as a pure function.

open → dispatched → accepted → on_site → resolved → signed_off → followed_up → closed, with
waiting_for_customer as a pause entered from accepted/on_site that returns to where it was.
A fault that comes back reopens a resolved (signed-off, followed-up or closed) ticket: it is
open again, unassigned, and its SLA clocks start again at the reopening.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.model import Signature, StateChange, Ticket, TicketState

S = TicketState


class TransitionError(ValueError):
    """The event is not allowed in the ticket's current state (or would rewind time)."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Assign (or re-assign, while still dispatched) an engineer."""

    engineer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Accept:
    """The assigned engineer takes the job; stops the respond clock."""


@dataclass(frozen=True, slots=True)
class Arrive:
    """The engineer is on site."""


@dataclass(frozen=True, slots=True)
class Depart:
    """The engineer leaves without a fix (parts, second visit); the ticket goes back to accepted."""

    note: str = ""


@dataclass(frozen=True, slots=True)
class Pause:
    """Waiting for the customer (access, information); the SLA clock stops."""

    note: str = ""


@dataclass(frozen=True, slots=True)
class Resume:
    """The customer is back; return to the state the pause came from."""


@dataclass(frozen=True, slots=True)
class Resolve:
    """The fault is fixed; stops the resolve clock."""

    fault: str
    resolution: str = ""
    parts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SignOff:
    """The customer signs the service report; only its SHA-256 is kept."""

    signer: str
    report: bytes


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Follow-up call done; records the customer's satisfaction (1-5)."""

    satisfaction: int


@dataclass(frozen=True, slots=True)
class Close:
    """Nothing left to do."""


@dataclass(frozen=True, slots=True)
class Reopen:
    """The fault came back: open the ticket again (unassigned, sign-off and score cleared)."""

    reason: str


Event = (
    Dispatch
    | Accept
    | Arrive
    | Depart
    | Pause
    | Resume
    | Resolve
    | SignOff
    | FollowUp
    | Close
    | Reopen
)

# Allowed (event type → from-states → to-state); Resume is special-cased (its target varies).
_MOVES: dict[type[Any], tuple[frozenset[TicketState], TicketState]] = {
    Dispatch: (frozenset({S.OPEN, S.DISPATCHED}), S.DISPATCHED),
    Accept: (frozenset({S.DISPATCHED}), S.ACCEPTED),
    Arrive: (frozenset({S.ACCEPTED}), S.ON_SITE),
    Depart: (frozenset({S.ON_SITE}), S.ACCEPTED),
    Pause: (frozenset({S.ACCEPTED, S.ON_SITE}), S.WAITING_FOR_CUSTOMER),
    Resume: (frozenset({S.WAITING_FOR_CUSTOMER}), S.WAITING_FOR_CUSTOMER),
    Resolve: (frozenset({S.ON_SITE}), S.RESOLVED),
    SignOff: (frozenset({S.RESOLVED}), S.SIGNED_OFF),
    FollowUp: (frozenset({S.SIGNED_OFF}), S.FOLLOWED_UP),
    Close: (frozenset({S.FOLLOWED_UP}), S.CLOSED),
    Reopen: (frozenset({S.RESOLVED, S.SIGNED_OFF, S.FOLLOWED_UP, S.CLOSED}), S.OPEN),
}


def allowed_events(state: TicketState) -> tuple[str, ...]:
    """Names of the events accepted in ``state`` (for UIs and error messages)."""
    return tuple(kind.__name__ for kind, (sources, _) in _MOVES.items() if state in sources)


def transition(ticket: Ticket, event: Event, at: datetime) -> Ticket:
    """Apply ``event`` at ``at``; raise TransitionError when the lifecycle forbids it."""
    sources, target = _MOVES[type(event)]
    name = type(event).__name__
    if ticket.state not in sources:
        allowed = ", ".join(allowed_events(ticket.state)) or "none"
        raise TransitionError(
            f"ticket {ticket.id}: {name} not allowed in state {ticket.state}; allowed: {allowed}"
        )
    if at.tzinfo is None:
        raise TransitionError(f"ticket {ticket.id}: {name} time must be timezone-aware")
    if at < ticket.last_change:
        raise TransitionError(
            f"ticket {ticket.id}: {name} at {at.isoformat()} is before the last change "
            f"at {ticket.last_change.isoformat()}"
        )
    update: dict[str, Any] = {}
    note = ""
    match event:
        case Dispatch(engineer_id=engineer, reason=reason):
            if not engineer:
                raise TransitionError(f"ticket {ticket.id}: Dispatch needs an engineer")
            if ticket.assignee is not None and ticket.assignee != engineer:
                update["previous_assignees"] = (*ticket.previous_assignees, ticket.assignee)
            update |= {"assignee": engineer, "dispatch_reason": reason}
            note = f"to {engineer}"
        case Pause(note=note) | Depart(note=note):
            if isinstance(event, Pause):
                update["paused_from"] = ticket.state
        case Resume():
            assert ticket.paused_from is not None  # set by every Pause
            target = ticket.paused_from
            update["paused_from"] = None
        case Resolve(fault=fault, resolution=resolution, parts=parts):
            if not fault:
                raise TransitionError(f"ticket {ticket.id}: Resolve needs a fault type")
            # Parts accumulate: a reopened ticket keeps what the earlier visits used.
            update |= {"fault": fault, "resolution": resolution, "parts": (*ticket.parts, *parts)}
        case SignOff(signer=signer, report=report):
            if not signer:
                raise TransitionError(f"ticket {ticket.id}: SignOff needs a signer")
            digest = hashlib.sha256(report).hexdigest()
            update["signature"] = Signature(signer=signer, report_sha256=digest, at=at)
            note = f"by {signer}"
        case FollowUp(satisfaction=score):
            if not 1 <= score <= 5:
                raise TransitionError(f"ticket {ticket.id}: satisfaction {score} is not 1-5")
            update["satisfaction"] = score
        case Reopen(reason=reason):
            if not reason.strip():
                raise TransitionError(f"ticket {ticket.id}: Reopen needs a reason")
            if ticket.assignee is not None:
                update["previous_assignees"] = (*ticket.previous_assignees, ticket.assignee)
            update |= {
                "assignee": None,
                "dispatch_reason": "",
                "signature": None,
                "satisfaction": None,
            }
            note = f"reopened: {reason}"
        case _:
            pass
    change = StateChange(state=target, at=at, note=note)
    update |= {"state": target, "history": (*ticket.history, change)}
    return ticket.model_copy(update=update)
