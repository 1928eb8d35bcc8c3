"""The desk wires intake, dispatch, lifecycle and escalation to a store, auditing each change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from contract import AlertEvent, AlertTransition, Severity
from service import desk
from service.audit import verify
from service.lifecycle import Accept, Resolve, TransitionError
from service.model import TicketState, Tier
from service.schedules import ScheduleConfig
from service.sla import SlaConfig
from service.store import SqliteStore
from tests.service.factories import T0, device, engineer, hours, site


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    db = SqliteStore()
    db.put_site(site("s1"))
    db.put_device(device("d1"))
    db.put_engineer(engineer("e1", supervisor="boss"))
    db.put_engineer(engineer("e2"))
    yield db
    db.close()


def raised(at_us: int = int(T0.timestamp() * 1e6)) -> AlertEvent:
    return AlertEvent(
        device_id="d1",
        rule_id="probe",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=at_us,
    )


def test_alert_opens_dispatches_and_audits(store: SqliteStore) -> None:
    t = desk.handle_alert(store, raised(), "t1", T0, SlaConfig())
    assert t is not None and t.state is TicketState.DISPATCHED and t.assignee == "e1"
    assert t.tier is Tier.URGENT
    again = desk.handle_alert(store, raised(raised().at_us + 1), "t2", T0, SlaConfig())
    assert again is not None and again.id == "t1" and len(again.evidence) == 2
    assert [t.id for t in store.tickets()] == ["t1"]
    log = store.audit_log()
    assert [e.action for e in log] == ["opened", "dispatched", "evidence_added"]
    assert verify(log).ok


def test_manual_ticket_and_lifecycle(store: SqliteStore) -> None:
    t = desk.open_ticket(store, "d1", Tier.GENERAL, "screen flickers", "hospital:s1", "m1", T0)
    assert t.state is TicketState.DISPATCHED
    desk.apply(store, "m1", Accept(), "engineer:e1", T0 + hours(1))
    with pytest.raises(TransitionError):
        desk.apply(store, "m1", Resolve("screen"), "engineer:e1", T0 + hours(2))
    stored = store.ticket("m1")
    assert stored is not None and stored.state is TicketState.ACCEPTED
    with pytest.raises(desk.NotFound):
        desk.open_ticket(store, "nope", Tier.GENERAL, "", "x", "m2", T0)


def test_no_engineer_leaves_ticket_open_and_audits_why(store: SqliteStore) -> None:
    store.put_device(device("d9", site_id="s9"))
    store.put_site(site("s9", region="islands"))
    t = desk.open_ticket(store, "d9", Tier.GENERAL, "", "admin", "m9", T0)
    assert t.state is TicketState.OPEN
    failed = [e for e in store.audit_log() if e.action == "dispatch_failed"]
    assert "region islands" in failed[0].data["reason"]


def test_escalation_redispatches_and_is_audited(store: SqliteStore) -> None:
    desk.handle_alert(store, raised(), "t1", T0, SlaConfig())
    assert desk.run_escalations(store, T0 + hours(1), SlaConfig()) == []
    # At the deadline itself accepting still meets it: the escalation comes only after.
    assert desk.run_escalations(store, T0 + hours(2), SlaConfig()) == []
    [result] = desk.run_escalations(store, T0 + hours(2.01), SlaConfig())
    assert result.supervisor_id == "boss" and result.ticket.assignee == "e2"
    stored = store.ticket("t1")
    assert stored is not None and stored.assignee == "e2"
    assert store.audit_log()[-1].action == "escalated"


def test_schedules_open_tickets_once(store: SqliteStore) -> None:
    store.put_device(device("d5", last_inspection=date(2025, 1, 1)))
    ids = iter(["pm1", "pm2", "pm3"])
    opened = desk.run_schedules(store, T0, ScheduleConfig(), lambda: next(ids))
    assert [(t.id, t.device_id, t.state) for t in opened] == [
        ("pm1", "d1", TicketState.DISPATCHED),
        ("pm2", "d5", TicketState.DISPATCHED),
    ]
    assert desk.run_schedules(store, T0, ScheduleConfig(), lambda: next(ids)) == []


def test_breaches_come_from_the_store(store: SqliteStore) -> None:
    desk.handle_alert(store, raised(), "t1", T0, SlaConfig())
    found = desk.breaches(store, T0, T0 + hours(3), SlaConfig())
    assert [(b.ticket_id, b.clock.value) for b in found] == [("t1", "respond")]
