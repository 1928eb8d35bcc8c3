"""Escalation of urgent tickets nobody accepted in time."""

from __future__ import annotations

from datetime import timedelta

from service.dispatch import Assignment, NoEngineer
from service.escalation import escalate, escalation_due_at, escalations_due
from service.lifecycle import Dispatch
from service.model import TicketState, Tier
from service.sla import SlaConfig
from tests.service.factories import T0, accepted, device, engineer, hours, site, ticket, walk

CONFIG = SlaConfig()
STAFF = [engineer("e1", supervisor="boss-1"), engineer("e2"), engineer("e3", region="south")]


def test_unaccepted_urgent_ticket_is_due_two_hours_after_opening() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0 + hours(0.5)))
    assert escalation_due_at(t, CONFIG) == T0 + hours(2)
    assert escalations_due([t], T0 + hours(1.9), CONFIG) == []
    assert escalations_due([t], T0 + hours(2), CONFIG) == []  # accepting now still meets it
    assert escalations_due([t], T0 + hours(2) + timedelta(microseconds=1), CONFIG) == [t]


def test_upgrade_to_urgent_starts_the_window() -> None:
    t = ticket(tier=Tier.GENERAL).model_copy(
        update={"tier": Tier.URGENT, "tier_since": T0 + hours(5)}
    )
    assert escalation_due_at(t, CONFIG) == T0 + hours(7)


def test_dispatched_general_and_accepted_tickets_never_escalate() -> None:
    general = walk(ticket(tier=Tier.GENERAL), (Dispatch("e1", "x"), T0))
    assert escalation_due_at(general, CONFIG) is None
    assert escalation_due_at(accepted(ticket(), T0), CONFIG) is None


def test_escalation_notifies_supervisor_and_redispatches_to_someone_else() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0))
    result = escalate(t, T0 + hours(2), device(), site(), STAFF, [t])
    assert result.supervisor_id == "boss-1" and result.lapsed_assignee == "e1"
    assert isinstance(result.outcome, Assignment) and result.outcome.engineer_id == "e2"
    assert result.ticket.assignee == "e2" and result.ticket.previous_assignees == ("e1",)
    assert result.ticket.state is TicketState.DISPATCHED
    assert result.ticket.dispatch_reason.startswith("escalated after e1 did not accept")
    # The new engineer gets a full window.
    assert escalation_due_at(result.ticket, CONFIG) == T0 + hours(4)


def test_escalation_without_anyone_left_keeps_the_ticket_and_waits_a_window() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0), (Dispatch("e2", "y"), T0 + hours(2)))
    result = escalate(t, T0 + hours(4), device(), site(), STAFF, [t])
    assert isinstance(result.outcome, NoEngineer)
    assert result.ticket.assignee == "e2"
    assert result.ticket.escalated_at == (T0 + hours(4),)
    assert escalation_due_at(result.ticket, CONFIG) == T0 + hours(6)


def test_never_dispatched_ticket_escalates_to_the_desk() -> None:
    result = escalate(ticket(), T0 + hours(2), device(), site(), [], [])
    assert result.supervisor_id is None and isinstance(result.outcome, NoEngineer)
