"""SLA and dispatch edge cases: deadlines, waiting tickets, local days, reopening."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from contract import AlertEvent, AlertTransition, Severity
from service import desk
from service.lifecycle import Accept, Arrive, Dispatch, Reopen, Resolve, SignOff
from service.model import Ticket, TicketState, Tier
from service.notifications import opened_notifications
from service.schedules import PREVENTIVE_RULE, ScheduleConfig, due_tasks
from service.sla import Clock, SlaConfig, TierPolicy, breaches_between, sla_status
from service.store import SqliteStore
from service.ticker import Ticker
from service.worker_settings import WorkerSettings
from tests.service.factories import T0, device, engineer, hours, site, ticket, walk


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    db = SqliteStore()
    db.put_site(site("s1"))
    db.put_device(device("d1"))
    db.put_device(device("d2"))
    yield db
    db.close()


# No preventive maintenance in these tests: only the tickets they open exist.
SETTINGS = WorkerSettings(schedules=ScheduleConfig(inspected_kinds=frozenset()))


def alert(device_id: str = "d1", severity: Severity = Severity.CRITICAL) -> AlertEvent:
    return AlertEvent(
        device_id=device_id,
        rule_id="probe",
        severity=severity,
        transition=AlertTransition.RAISED,
        at_us=int(T0.timestamp() * 1e6),
    )


def events(store: SqliteStore, name: str) -> list[str]:
    """Ticket ids of the service team's notifications of ``name`` in the outbox."""
    return [
        str(i.payload["ticket_id"])
        for i in store.notifications()
        if i.event == name and i.role == "service" and i.channel == "mqtt"
    ]


# --- a deadline is met at the deadline; breached only after it -------------------------


async def test_scan_ending_exactly_at_the_deadline_reports_no_breach_and_no_escalation(
    store: SqliteStore,
) -> None:
    store.put_engineer(engineer("e1"))
    store.put_engineer(engineer("e2"))
    ticker = Ticker(SETTINGS, store)
    on_time, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())
    late, _ = desk.intake_alert(store, alert("d2"), T0, SlaConfig())
    assert on_time is not None and late is not None
    await ticker.scan_breaches(T0)  # the first scan starts the cursor
    deadline = T0 + hours(2)
    await ticker.tick(deadline)
    assert events(store, "sla.breached") == [] and events(store, "ticket.escalated") == []
    # Accepting at that same instant meets the SLA: nothing is ever reported for it.
    desk.apply(store, on_time.id, Accept(), "engineer:e1", deadline)
    accepted = store.ticket(on_time.id)
    assert accepted is not None
    assert not sla_status(accepted, deadline, SlaConfig()).respond.breached
    await ticker.tick(deadline + timedelta(seconds=1))
    assert events(store, "sla.breached") == [late.id]
    assert events(store, "ticket.escalated") == [late.id]


def test_a_breach_belongs_to_the_window_after_its_deadline() -> None:
    t = walk(ticket(), (Dispatch("e1", "x"), T0))
    due = T0 + hours(2)
    assert breaches_between([t], T0, due, SlaConfig()) == []
    [breach] = breaches_between([t], due, due + timedelta(microseconds=1), SlaConfig())
    assert breach.at == due and breach.clock is Clock.RESPOND


# --- no engineer: the reason is on the ticket and in the notification -------------------


def test_no_engineer_reason_is_stored_on_the_ticket_and_told(store: SqliteStore) -> None:
    made, opened = desk.intake_alert(store, alert(), T0, SlaConfig())
    assert opened and made is not None and made.state is TicketState.OPEN
    stored = store.ticket(made.id)
    assert stored is not None and "no engineer for endoscope in region north" in (
        stored.dispatch_reason
    )
    notes = opened_notifications(stored, store.device("d1"), T0, SlaConfig())
    by_role = {n.role: n for n in notes}
    assert by_role["service"].event == "ticket.opened"
    assert by_role["service"].payload["dispatch_reason"] == stored.dispatch_reason
    assert by_role["hospital"].payload["dispatch_reason"] == stored.dispatch_reason
    failed = [e for e in store.audit_log() if e.action == "dispatch_failed"]
    assert [e.data["reason"] for e in failed] == [stored.dispatch_reason]


# --- undispatched tickets: retried when capacity frees, escalated to the desk -----------


async def test_waiting_general_ticket_is_dispatched_once_capacity_frees(
    store: SqliteStore,
) -> None:
    store.put_engineer(engineer("e1", capacity=1))
    ticker = Ticker(SETTINGS, store)
    first, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())
    waiting, _ = desk.intake_alert(store, alert("d2", Severity.WARNING), T0, SlaConfig())
    assert first is not None and first.assignee == "e1"
    assert waiting is not None and waiting.tier is Tier.GENERAL and waiting.assignee is None
    desk.apply(store, first.id, Accept(), "engineer:e1", T0)
    audit_rows = len(store.audit_log())
    for hour in range(1, 4):  # nobody free: the retries change nothing and audit nothing
        await ticker.tick(T0 + hours(hour))
    assert len(store.audit_log()) == audit_rows
    walked = [Arrive(), Resolve("probe")]
    for n, event in enumerate(walked):
        desk.apply(store, first.id, event, "engineer:e1", T0 + hours(3.1 + n / 10))
    await ticker.tick(T0 + hours(3.5))
    now_held = store.ticket(waiting.id)
    assert now_held is not None and now_held.assignee == "e1"
    assert now_held.state is TicketState.DISPATCHED
    dispatched = [
        i for i in store.notifications() if i.event == "ticket.dispatched" and i.subject == "e1"
    ]
    assert any(i.payload["ticket_id"] == waiting.id for i in dispatched)


async def test_undispatched_ticket_is_retried_and_escalated_over_60_hours_of_ticks(
    store: SqliteStore,
) -> None:
    store.put_engineer(engineer("e1", capacity=1))
    ticker = Ticker(SETTINGS, store)
    blocker, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())
    waiting, _ = desk.intake_alert(store, alert("d2", Severity.WARNING), T0, SlaConfig())
    assert blocker is not None and waiting is not None
    desk.apply(store, blocker.id, Accept(), "engineer:e1", T0 + hours(1))
    for hour in range(1, 61):
        if hour == 50:  # capacity frees after two days
            desk.apply(store, blocker.id, Arrive(), "engineer:e1", T0 + hours(49.5))
            desk.apply(store, blocker.id, Resolve("probe"), "engineer:e1", T0 + hours(49.6))
        await ticker.tick(T0 + hours(hour))
    # A general ticket escalates to the desk every respond window (4 h) while nobody takes it.
    escalated = [i for i in store.notifications() if i.event == "ticket.escalated"]
    assert {i.payload["ticket_id"] for i in escalated} == {waiting.id}
    times = sorted({i.created_at for i in escalated})
    # Due 4 h after opening, escalated by the first tick after that (strictly later), and
    # again one window after each escalation.
    assert times == [T0 + hours(h) for h in range(5, 50, 5)]
    done = store.ticket(waiting.id)
    assert done is not None and done.state is TicketState.DISPATCHED and done.assignee == "e1"


async def test_resolving_through_the_api_path_dispatches_a_waiting_ticket_at_once(
    store: SqliteStore,
) -> None:
    store.put_engineer(engineer("e1", capacity=1))
    first, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())
    waiting, _ = desk.intake_alert(store, alert("d2"), T0, SlaConfig())
    assert first is not None and waiting is not None
    for n, event in enumerate([Accept(), Arrive(), Resolve("probe")]):
        desk.apply(store, first.id, event, "engineer:e1", T0 + hours(1 + n))
    [moved] = desk.dispatch_waiting(store, T0 + hours(3))
    assert moved.id == waiting.id and moved.assignee == "e1"
    assert desk.dispatch_waiting(store, T0 + hours(3)) == []


def test_undispatched_escalation_time_is_configurable_per_tier() -> None:
    from service.escalation import escalation_due_at

    config = SlaConfig(
        tiers={
            Tier.GENERAL: TierPolicy(respond=hours(4), resolve=hours(48), undispatched=hours(12)),
            Tier.URGENT: TierPolicy(respond=hours(2), resolve=hours(24), undispatched=hours(1)),
        }
    )
    assert escalation_due_at(ticket(tier=Tier.GENERAL), config) == T0 + hours(12)
    assert escalation_due_at(ticket(tier=Tier.URGENT), config) == T0 + hours(1)
    # Once dispatched, a general ticket no longer escalates; an urgent one on its respond time.
    assert (
        escalation_due_at(walk(ticket(tier=Tier.GENERAL), (Dispatch("e", "x"), T0)), config) is None
    )
    urgent = walk(ticket(), (Dispatch("e", "x"), T0))
    assert escalation_due_at(urgent, config) == T0 + hours(2)
    with pytest.raises(ValueError, match="undispatched escalation time must be positive"):
        TierPolicy(respond=hours(1), resolve=hours(2), undispatched=timedelta())


# --- schedules count in the site's local days ------------------------------------------

SHANGHAI = ScheduleConfig(site_timezones={"sh": "Asia/Shanghai"}, inspected_kinds=frozenset())


def test_warranty_reminder_opens_on_the_sites_local_date() -> None:
    # Notice starts 2026-06-01; at 2026-05-31 20:00 UTC it is already 06-01 04:00 in Shanghai.
    d = device("w1", warranty_end=date(2026, 7, 1)).model_copy(update={"site_id": "sh"})
    evening = datetime(2026, 5, 31, 20, tzinfo=UTC)
    assert [t.device_id for t in due_tasks([d], [], evening, SHANGHAI)] == ["w1"]
    utc = ScheduleConfig(inspected_kinds=frozenset())
    assert due_tasks([d], [], evening, utc) == []  # a UTC site: not yet
    # A site west of UTC is still on 05-31 at 02:00 UTC on 06-01.
    west = ScheduleConfig(timezone="America/New_York", inspected_kinds=frozenset())
    assert due_tasks([d], [], datetime(2026, 6, 1, 2, tzinfo=UTC), west) == []


def test_preventive_maintenance_is_due_by_the_sites_local_date() -> None:
    d = device("pm1", last_inspection=date(2026, 3, 1)).model_copy(update={"site_id": "sh"})
    config = ScheduleConfig(site_timezones={"sh": "Asia/Shanghai"})
    # Due when today > 2026-05-30: in Shanghai that is 2026-05-30 16:00 UTC.
    assert due_tasks([d], [], datetime(2026, 5, 30, 15, 59, tzinfo=UTC), config) == []
    [task] = due_tasks([d], [], datetime(2026, 5, 30, 16, 0, tzinfo=UTC), config)
    assert task.rule_id == PREVENTIVE_RULE


def test_the_store_finds_local_schedule_candidates_across_the_date_line() -> None:
    store = SqliteStore()
    store.put_site(site("sh"))
    store.put_device(device("w1", site_id="sh", warranty_end=date(2026, 7, 1)))
    evening = datetime(2026, 5, 31, 20, tzinfo=UTC)
    opened = desk.run_schedules(store, evening, SHANGHAI, lambda: "wt1")
    assert [t.rule_id for t in opened] == ["schedule:warranty-expiry:2026-07-01"]
    store.close()


def test_schedule_time_zones_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        ScheduleConfig(site_timezones={"x": "Mars/Olympus"})


# --- reopening --------------------------------------------------------------------------


def resolved(at: datetime = T0) -> Ticket:
    return walk(
        ticket(),
        (Dispatch("e1", "x"), at),
        (Accept(), at + hours(1)),
        (Arrive(), at + hours(2)),
        (Resolve("probe", parts=("P-1",)), at + hours(3)),
        (SignOff("Dr A", b"report"), at + hours(4)),
    )


def test_reopen_opens_again_unassigned_and_restarts_the_clocks() -> None:
    again = T0 + hours(100)
    t = walk(resolved(), (Reopen("probe fails again"), again))
    assert t.state is TicketState.OPEN and t.assignee is None
    assert t.previous_assignees == ("e1",) and t.signature is None
    assert t.history[-1].note == "reopened: probe fails again" and t.reopens == (again,)
    status = sla_status(t, again + hours(1), SlaConfig())
    assert status.respond.elapsed == hours(1) and status.respond.deadline == again + hours(2)
    assert status.resolve.deadline == again + hours(24) and not status.breached
    from service.escalation import escalation_due_at

    assert escalation_due_at(t, SlaConfig()) == again + hours(2)
    # The second fix's parts join the first's.
    fixed = walk(
        t,
        (Dispatch("e2", "x"), again),
        (Accept(), again),
        (Arrive(), again),
        (Resolve("cable", parts=("C-2",)), again + hours(1)),
    )
    assert fixed.parts == ("P-1", "C-2") and fixed.site_visits == 2


def test_reopen_needs_a_reason_and_a_finished_ticket() -> None:
    from service.lifecycle import TransitionError, transition

    with pytest.raises(TransitionError, match="needs a reason"):
        transition(resolved(), Reopen("  "), T0 + hours(5))
    with pytest.raises(TransitionError, match="not allowed in state open"):
        transition(ticket(), Reopen("x"), T0)


def test_desk_reopen_is_audited_and_dispatched(store: SqliteStore) -> None:
    store.put_engineer(engineer("e1"))
    made, _ = desk.intake_alert(store, alert(), T0, SlaConfig())
    assert made is not None
    for n, event in enumerate([Accept(), Arrive(), Resolve("probe")]):
        desk.apply(store, made.id, event, "engineer:e1", T0 + hours(n))
    again = desk.reopen(store, made.id, "leaks again", "hospital:s1", T0 + hours(30))
    assert again.state is TicketState.DISPATCHED and again.assignee == "e1"
    actions = [(e.action, e.actor) for e in store.audit_log()[-2:]]
    assert actions == [("reopen", "hospital:s1"), ("dispatched", "dispatcher")]
    assert store.audit_log()[-2].data["event"]["reason"] == "leaks again"


# --- settings -----------------------------------------------------------------------------


def test_settings_carry_undispatched_times_and_site_time_zones() -> None:
    from vigil.settings import VigilSettings

    settings = VigilSettings(
        sla={"general_undispatched_h": 12},
        sites={"sh": {"timezone": "Asia/Shanghai"}},
    )
    sla = settings.sla_config()
    assert sla.undispatched(Tier.GENERAL) == hours(12)
    assert sla.undispatched(Tier.URGENT) == hours(2)  # unset: the respond target
    schedules = settings.schedule_config()
    assert schedules.site_timezones == {"sh": "Asia/Shanghai"} and schedules.timezone == "UTC"
    with pytest.raises(ValueError, match="greater than 0"):
        VigilSettings(sla={"urgent_undispatched_h": 0})


def test_reopened_tickets_count_in_the_kpis_and_leave_first_time_fix(store: SqliteStore) -> None:
    from service.api.routes.kpis import compute_kpis, kpis_from_facts
    from service.store.queries import DeviceQuery, Scope

    store.put_engineer(engineer("e1"))
    made, _ = desk.intake_alert(store, alert(), T0, SlaConfig())
    assert made is not None
    for n, event in enumerate([Accept(), Arrive(), Resolve("probe")]):
        desk.apply(store, made.id, event, "engineer:e1", T0 + hours(n))
    now = T0 + hours(30)
    before = kpis_from_facts(store.kpi_facts(Scope(), now), now, SlaConfig())
    assert before.reopened == 0 and before.first_time_fix.fixed_first_time == 1
    desk.reopen(store, made.id, "leaks again", "hospital:s1", T0 + hours(10))
    for n, event in enumerate([Accept(), Arrive(), Resolve("seal")]):
        desk.apply(store, made.id, event, "engineer:e1", T0 + hours(11 + n))
    after = kpis_from_facts(store.kpi_facts(Scope(), now), now, SlaConfig())
    fleet = store.device_page(DeviceQuery(limit=None))
    assert after == compute_kpis(fleet, store.tickets(), now, SlaConfig())
    assert after.reopened == 1
    assert after.first_time_fix.fixed_first_time == 0  # two visits: not a first-time fix
    assert after.first_time_fix.resolved == 1
