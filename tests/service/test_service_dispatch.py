"""Auto-dispatch by region, skill and load, and alert intake with dedupe."""

from __future__ import annotations

from contract import AlertEvent, AlertTransition, DeviceKind, Severity
from service.dispatch import Assignment, NoEngineer, dispatch, workload
from service.intake import open_or_append
from service.lifecycle import Dispatch, transition
from service.model import Ticket, TicketState, Tier
from service.sla import SlaConfig
from tests.service.factories import T0, device, engineer, on_site, site, ticket, walk

SITE = site()
DEVICE = device()


def held(engineer_id: str, n: int) -> list[Ticket]:
    """``n`` tickets currently held by ``engineer_id``."""
    return [
        walk(ticket(f"h-{engineer_id}-{i}"), (Dispatch(engineer_id, "x"), T0)) for i in range(n)
    ]


def test_picks_least_loaded_engineer_in_region_with_skill() -> None:
    staff = [
        engineer("e1", capacity=4),
        engineer("e2", capacity=2),
        engineer("e3", region="south"),
        engineer("e4", skills=frozenset({DeviceKind.ULTRASOUND})),
    ]
    result = dispatch(ticket(), DEVICE, SITE, staff, held("e1", 1) + held("e2", 1))
    assert isinstance(result, Assignment)
    assert result.engineer_id == "e1"  # 1/4 beats 1/2
    assert "region north" in result.reason and "load 1/4" in result.reason


def test_ties_are_broken_by_engineer_id_whatever_the_input_order() -> None:
    staff = [engineer("e9"), engineer("e2"), engineer("e5")]
    for order in (staff, staff[::-1]):
        result = dispatch(ticket(), DEVICE, SITE, order, [])
        assert result == Assignment("e2", result.reason)
        assert "broken by engineer id" in result.reason


def test_full_engineers_are_skipped() -> None:
    staff = [engineer("e1", capacity=1), engineer("e2", capacity=1)]
    result = dispatch(ticket(), DEVICE, SITE, staff, held("e1", 1))
    assert isinstance(result, Assignment) and result.engineer_id == "e2"


def test_only_held_tickets_count_as_load() -> None:
    done = walk(on_site(ticket("old"), T0, "e1"))
    resolved = done.model_copy(update={"state": TicketState.RESOLVED})
    assert workload([resolved, *held("e1", 2)]) == {"e1": 2}


def test_the_ticket_being_dispatched_is_not_its_own_load() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0))
    result = dispatch(t, DEVICE, SITE, [engineer("e1", capacity=1)], [t])
    assert isinstance(result, Assignment)


def test_excluded_engineers_are_never_chosen() -> None:
    result = dispatch(ticket(), DEVICE, SITE, [engineer("e1"), engineer("e2")], [], exclude={"e1"})
    assert isinstance(result, Assignment) and result.engineer_id == "e2"


def test_no_eligible_engineer_says_why() -> None:
    staff = [engineer("e1", capacity=0), engineer("e2", region="south")]
    result = dispatch(ticket(), DEVICE, SITE, staff, [], exclude={"e3"})
    assert isinstance(result, NoEngineer)
    assert "region north" in result.reason
    assert "1 in region, 1 skilled, 0 with spare capacity" in result.reason
    assert "excluded: e3" in result.reason


def alert(
    transition_: AlertTransition = AlertTransition.RAISED,
    severity: Severity = Severity.WARNING,
    rule: str = "r1",
    at_us: int = int(T0.timestamp() * 1e6),
) -> AlertEvent:
    return AlertEvent(
        device_id="d1",
        rule_id=rule,
        severity=severity,
        transition=transition_,
        at_us=at_us,
        message="probe degraded",
        evidence={"probe_health": 41.0},
    )


def test_raised_alert_opens_a_ticket() -> None:
    result = open_or_append([], alert(), "t-new", SlaConfig())
    assert result.created and result.ticket is not None
    t = result.ticket
    assert (t.id, t.device_id, t.rule_id, t.tier) == ("t-new", "d1", "r1", Tier.GENERAL)
    assert t.opened_at == T0 and t.evidence[0].data == {"probe_health": 41.0}


def test_second_alert_appends_to_the_open_ticket() -> None:
    first = open_or_append([], alert(), "t1", SlaConfig()).ticket
    assert first is not None
    again = open_or_append([first], alert(at_us=alert().at_us + 1), "t2", SlaConfig())
    assert not again.created and again.ticket is not None
    assert again.ticket.id == "t1" and len(again.ticket.evidence) == 2


def test_other_rule_gets_its_own_ticket() -> None:
    first = open_or_append([], alert(), "t1", SlaConfig()).ticket
    assert first is not None
    other = open_or_append([first], alert(rule="r2"), "t2", SlaConfig())
    assert other.created


def test_resolved_ticket_does_not_absorb_a_new_failure() -> None:
    first = open_or_append([], alert(), "t1", SlaConfig()).ticket
    assert first is not None
    done = first.model_copy(update={"state": TicketState.RESOLVED})
    assert open_or_append([done], alert(), "t2", SlaConfig()).created


def test_clear_without_open_ticket_is_ignored_but_with_one_is_evidence() -> None:
    cleared = alert(AlertTransition.CLEARED)
    assert open_or_append([], cleared, "t1", SlaConfig()).ticket is None
    first = open_or_append([], alert(), "t1", SlaConfig()).ticket
    assert first is not None
    result = open_or_append([first], cleared, "t2", SlaConfig())
    assert result.ticket is not None and len(result.ticket.evidence) == 2


def test_critical_alert_upgrades_the_tier_never_downgrades() -> None:
    first = open_or_append([], alert(), "t1", SlaConfig()).ticket
    assert first is not None
    later = alert().at_us + 3_600_000_000
    up = open_or_append([first], alert(severity=Severity.CRITICAL, at_us=later), "x", SlaConfig())
    assert up.ticket is not None and up.ticket.tier is Tier.URGENT
    assert up.ticket.tier_since > up.ticket.opened_at
    down = open_or_append([up.ticket], alert(at_us=later + 1), "x", SlaConfig())
    assert down.ticket is not None and down.ticket.tier is Tier.URGENT


def test_dispatch_result_goes_on_the_ticket() -> None:
    result = dispatch(ticket(), DEVICE, SITE, [engineer("e1")], [])
    assert isinstance(result, Assignment)
    t = transition(ticket(), Dispatch(result.engineer_id, result.reason), T0)
    assert t.dispatch_reason == result.reason
