"""Escalation: a ticket nobody took in time goes to a supervisor (or the desk) and is dispatched.

An urgent ticket not accepted within its respond window escalates to the lapsed engineer's
supervisor and is re-dispatched; a ticket of any tier still undispatched (no engineer had
capacity) after its tier's ``undispatched`` time escalates to the service desk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from service.dispatch import Assignment, NoEngineer, assign, workload
from service.lifecycle import Dispatch, transition
from service.model import Device, Engineer, Site, Ticket, TicketState, Tier
from service.sla import Clock, SlaConfig, advance_in

_UNACCEPTED = frozenset({TicketState.OPEN, TicketState.DISPATCHED})


@dataclass(frozen=True, slots=True)
class Escalation:
    """What escalating did: the updated ticket, whom to notify and the re-dispatch outcome."""

    ticket: Ticket
    supervisor_id: str | None  # None: nobody held the ticket, notify the service desk
    lapsed_assignee: str | None
    outcome: Assignment | NoEngineer


def escalation_due_at(ticket: Ticket, config: SlaConfig) -> datetime | None:
    """When an unaccepted urgent ticket or an undispatched one escalates; None when it cannot.

    The first escalation is due when the window from opening (or from the upgrade to urgent, or
    the reopening) runs out; each escalation restarts the window, so the re-dispatched engineer
    gets the full respond time and an unstaffed ticket escalates once per window, not on every
    tick. An undispatched ticket's window is its tier's ``undispatched`` time (default: respond).
    """
    if ticket.state is TicketState.OPEN:
        window = config.undispatched(ticket.tier)
    elif ticket.tier is Tier.URGENT and ticket.state in _UNACCEPTED:
        window = config.target(ticket.tier, Clock.RESPOND)
    else:
        return None
    anchor = max([ticket.episode().opened_at, ticket.tier_since, *ticket.escalated_at])
    return advance_in(config.counting_for(ticket), anchor, window)  # in the site's calendar


def escalations_due(tickets: Iterable[Ticket], now: datetime, config: SlaConfig) -> list[Ticket]:
    """Tickets whose escalation instant has passed at ``now`` (strictly), earliest first.

    Accepting exactly at the respond deadline meets the SLA, so escalating at that instant
    would take the ticket from an engineer who is still on time.
    """
    due = []
    for ticket in tickets:
        at = escalation_due_at(ticket, config)
        if at is not None and at < now:
            due.append((at, ticket.id, ticket))
    return [ticket for _, _, ticket in sorted(due, key=lambda d: (d[0], d[1]))]


def escalate(
    ticket: Ticket,
    at: datetime,
    device: Device,
    site: Site,
    engineers: Iterable[Engineer],
    tickets: Iterable[Ticket],
) -> Escalation:
    """Escalate ``ticket`` at ``at``: name the supervisor and re-dispatch to someone new."""
    load = workload(t for t in tickets if t.id != ticket.id)
    return escalate_loaded(ticket, at, device, site, engineers, load)


def escalate_loaded(
    ticket: Ticket,
    at: datetime,
    device: Device,
    site: Site,
    engineers: Iterable[Engineer],
    load: Mapping[str, int],
) -> Escalation:
    """``escalate`` given each engineer's held tickets (``load``, e.g. counted by the store).

    ``engineers`` must include the lapsed assignee, whose supervisor is notified.
    """
    staff = {e.id: e for e in engineers}
    lapsed = ticket.assignee
    supervisor = staff[lapsed].supervisor if lapsed in staff else None
    exclude = {*ticket.previous_assignees, *([lapsed] if lapsed else [])}
    outcome = assign(device, site, staff.values(), load, exclude=exclude)
    updated = ticket.model_copy(update={"escalated_at": (*ticket.escalated_at, at)})
    if isinstance(outcome, Assignment):
        why = f"{lapsed} did not accept" if lapsed else "no engineer had taken it"
        reason = f"escalated after {why}; {outcome.reason}"
        updated = transition(updated, Dispatch(outcome.engineer_id, reason), at)
    elif updated.state is TicketState.OPEN:
        # Nobody holds it: the ticket itself says why, for the desk and the board.
        updated = updated.model_copy(update={"dispatch_reason": outcome.reason})
    return Escalation(updated, supervisor, lapsed, outcome)
