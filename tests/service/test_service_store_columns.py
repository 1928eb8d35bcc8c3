"""The store contract for the columns lists, scopes and clocks query, on both backends.

Each ticket and device row carries derived columns (site, patient, clocks, due instants, last
inspection) that the store keeps in step on every write; these tests read them back through the
queries that use them and compare with the pure functions they stand for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from contract import DeviceKind
from service import desk
from service.api.routes.kpis import compute_kpis, kpis_from_facts
from service.escalation import escalations_due
from service.lifecycle import Accept, Arrive, Dispatch, Pause, Resolve
from service.model import OPEN_STATES, Location, Patient, TicketKind, TicketState, Tier
from service.schedules import ScheduleConfig, due_tasks
from service.sla import SlaConfig, TierPolicy, breaches_between
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.store.queries import DeviceQuery, Scope, TicketQuery
from tests.service.factories import T0, device, engineer, hours, site, ticket, walk


@pytest.fixture(params=["memory", "file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    db: ServiceStore
    if request.param == "postgres":
        db = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(":memory:" if request.param == "memory" else tmp_path / "service.db")
    yield db
    db.close()


def installed(store: ServiceStore) -> None:
    """Two sites; devices, one of them a patient's kit in a ward; two engineers."""
    store.put_site(site("s1"))
    store.put_site(site("s2", region="south"))
    for n in range(4):
        store.put_device(device(f"d{n}", site_id="s1"))
    store.put_device(device("d9", site_id="s2"))
    kit = device("k1", DeviceKind.PATCH, site_id="s1").model_copy(
        update={"patient": "p-1", "location": Location(ward="W1", room="3")}
    )
    store.put_device(kit)
    store.put_patient(Patient(id="p-1", site_id="s1", kit=("k1",)))
    store.put_engineer(engineer("e1", capacity=10))
    store.put_engineer(engineer("e2", capacity=10))


def ids(store: ServiceStore, query: TicketQuery) -> list[str]:
    return [t.id for t, _ in store.ticket_page(query)]


def test_scopes_follow_the_device(store: ServiceStore) -> None:
    installed(store)
    for n, device_id in enumerate(["d0", "d1", "d9", "k1", "ghost"]):
        store.put_ticket(ticket(f"t{n}", device_id, at=T0 + hours(n)))
    assert ids(store, TicketQuery(scope=Scope(site_id="s1"))) == ["t0", "t1", "t3"]
    assert ids(store, TicketQuery(scope=Scope(patient="p-1"))) == ["t3"]
    assert ids(store, TicketQuery(scope=Scope(empty=True))) == []
    # Everyone sees only tickets of installed devices, as the API always did.
    assert ids(store, TicketQuery()) == ["t0", "t1", "t2", "t3"]
    # A device that moves takes its tickets along; one installed late adopts its tickets.
    store.put_device(device("d1", site_id="s2"))
    store.put_device(device("ghost", site_id="s2"))
    assert ids(store, TicketQuery(scope=Scope(site_id="s2"))) == ["t1", "t2", "t4"]
    assert [d.id for d in store.device_page(DeviceQuery(scope=Scope(patient="p-1")))] == ["k1"]
    assert store.device_ids(DeviceQuery(site_id="s1", ward="W1")) == ["k1"]
    assert store.device_ids(DeviceQuery(kind=DeviceKind.PATCH)) == ["k1"]


def test_filters_and_keyset_pages(store: ServiceStore) -> None:
    installed(store)
    made = []
    for n in range(9):
        tier = Tier.URGENT if n % 3 else Tier.GENERAL
        t = ticket(f"t{n}", f"d{n % 4}", tier=tier, at=T0 + hours(n))
        if n % 2:
            t = walk(t, (Dispatch("e1" if n % 4 == 1 else "e2", "x"), T0 + hours(n + 1)))
        made.append(store.put_ticket(t))
    dispatched = ids(store, TicketQuery(states=(TicketState.DISPATCHED,)))
    assert dispatched == ["t1", "t3", "t5", "t7"]
    assert ids(store, TicketQuery(assignee="e1")) == ["t1", "t5"]
    assert ids(store, TicketQuery(tier=Tier.GENERAL)) == ["t0", "t3", "t6"]
    assert ids(store, TicketQuery(updated_since=T0 + hours(8))) == ["t7", "t8"]
    # Due first: respond in 4 h (general) or 2 h (urgent) from the opening.
    assert ids(store, TicketQuery(due_before=T0 + hours(4.5))) == ["t0", "t1", "t2"]
    for sort in ("id", "opened", "-opened", "updated", "-updated", "due"):
        everything = store.ticket_page(TicketQuery(sort=sort, limit=None))
        pages, after = [], None
        while found := store.ticket_page(TicketQuery(sort=sort, after=after, limit=2)):
            pages += found
            after = found[-1][1]
        assert pages == everything, sort
    newest = ids(store, TicketQuery(sort="-opened", limit=3))
    assert newest == ["t8", "t7", "t6"]
    assert ids(store, TicketQuery(limit=2, offset=3)) == ["t3", "t4"]


def test_the_worker_finds_what_is_due(store: ServiceStore) -> None:
    installed(store)
    config = SlaConfig()
    late = store.put_ticket(ticket("late", "d0", at=T0))
    store.put_ticket(ticket("fresh", "d1", at=T0 + hours(3)))
    accepted = walk(ticket("done", "d2", at=T0), (Dispatch("e1", "x"), T0), (Accept(), T0))
    store.put_ticket(accepted)
    now = T0 + hours(2.01)
    assert store.escalations_due(T0 + hours(2)) == []  # at the deadline: not yet
    assert store.escalations_due(now) == ["late"]
    assert escalations_due(store.tickets(), now, config) == [late]
    window = (T0, T0 + hours(30))
    found = breaches_between(store.breach_candidates(*window), *window, config)
    assert found == breaches_between(store.tickets(), *window, config)
    assert {b.ticket_id for b in found} == {"late", "fresh", "done"}
    assert store.engineer_load(["e1", "e2"], exclude_ticket="x") == {"e1": 1}
    assert store.engineer_load(["e1"], exclude_ticket="done") == {}


def test_schedules_find_due_devices_through_columns(store: ServiceStore) -> None:
    config = ScheduleConfig()
    store.put_site(site("s1"))
    store.put_engineer(engineer("e1"))
    today = date(2026, 6, 1)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    store.put_device(device("old", installed_on=date(2025, 1, 1)))
    store.put_device(device("new", installed_on=date(2026, 5, 1)))
    store.put_device(device("seen", installed_on=date(2025, 1, 1), last_inspection=today))
    store.put_device(device("warm", installed_on=today, warranty_end=date(2026, 6, 20)))
    store.put_device(device("patch", DeviceKind.PATCH, installed_on=date(2020, 1, 1)))
    found = store.schedule_candidates(today, config)
    assert [d.id for d in found] == ["old", "warm"]
    everything = due_tasks(store.devices(), store.tickets(), now, config)
    assert due_tasks(found, store.tickets(), now, config) == everything
    opened = desk.run_schedules(store, now, config, iter(["pm", "w"]).__next__)
    assert [t.id for t in opened] == ["pm", "w"]
    assert store.schedule_candidates(today, config) == []  # covered by their tickets now
    # Resolving the preventive ticket moves the device's last inspection to that day.
    for event, at in ((Accept(), now), (Arrive(), now), (Resolve("pm", "ok"), now)):
        desk.apply(store, "pm", event, "e1", at)

    def candidates(on: date) -> list[str]:
        return [d.id for d in store.schedule_candidates(on, config)]

    assert "old" not in candidates(date(2026, 8, 20))  # inspected on 1 June, due after 90 days
    assert "old" in candidates(date(2026, 9, 1))
    for day in range(60, 120, 7):  # the candidates decide as every device would
        at = now + timedelta(days=day)
        found = store.schedule_candidates(at.date(), config)
        assert due_tasks(found, store.tickets(), at, config) == due_tasks(
            store.devices(), store.tickets(), at, config
        )


def test_clocks_are_recomputed_under_another_sla(store: ServiceStore) -> None:
    installed(store)
    store.put_ticket(ticket("t1", "d0", at=T0))
    assert store.escalations_due(T0 + hours(1)) == []
    assert store.refresh_clocks() == 0  # computed under this configuration already
    store.sla = SlaConfig(tiers={Tier.URGENT: TierPolicy(respond=hours(0.5), resolve=hours(8))})
    assert store.escalations_due(T0 + hours(1)) == []  # still the old columns
    assert store.refresh_clocks() == 1
    assert store.escalations_due(T0 + hours(1)) == ["t1"]
    assert store.refresh_clocks() == 0


def kpi_tickets(store: ServiceStore) -> None:
    """Tickets met, breached, paused, resolved (first visit or not), and one from the future."""
    installed(store)
    store.put_device(device("d5", model="EX-200", site_id="s2"))
    steps = [
        [(Dispatch("e1", "x"), hours(1)), (Accept(), hours(1.5))],
        [(Dispatch("e1", "x"), hours(1)), (Accept(), hours(3))],
        [(Dispatch("e2", "x"), hours(1)), (Accept(), hours(1)), (Arrive(), hours(2))],
        [
            (Dispatch("e2", "x"), hours(1)),
            (Accept(), hours(1)),
            (Arrive(), hours(2)),
            (Resolve("fan", "new"), hours(5)),
        ],
        [
            (Dispatch("e2", "x"), hours(1)),
            (Accept(), hours(1)),
            (Arrive(), hours(2)),
            (Pause("parts"), hours(3)),
        ],
        [],
    ]
    for n, walk_steps in enumerate(steps):
        t = ticket(f"t{n}", ["d0", "d1", "d9", "k1", "d5", "d2"][n], at=T0 + hours(n))
        store.put_ticket(walk(t, *[(e, T0 + hours(n) + at) for e, at in walk_steps]))
    future = ticket("f", "d3", at=T0 + timedelta(days=400), kind=TicketKind.MANUAL)
    store.put_ticket(walk(future, (Dispatch("e1", "x"), T0 + timedelta(days=400))))


@pytest.mark.parametrize("scope", [Scope(), Scope(site_id="s1"), Scope(site_id="s2")])
def test_kpis_from_sql_aggregates_equal_the_python_ones(store: ServiceStore, scope: Scope) -> None:
    kpi_tickets(store)
    sla = SlaConfig().located(store)
    now = T0 + timedelta(days=2)
    fleet = store.device_page(DeviceQuery(scope=scope, limit=None))
    mine = {d.id for d in fleet}
    tickets = [t for t in store.tickets() if t.device_id in mine]
    want = compute_kpis(fleet, tickets, now, sla)
    got = kpis_from_facts(store.kpi_facts(scope, now), now, sla)
    assert got.model_dump(exclude={"failure_rate_by_model"}) == want.model_dump(
        exclude={"failure_rate_by_model"}
    )
    for g, w in zip(got.failure_rate_by_model, want.failure_rate_by_model, strict=True):
        assert (g.model, g.devices, g.failures) == (w.model, w.devices, w.failures)
        assert g.device_years == pytest.approx(w.device_years)
        assert g.per_device_year == pytest.approx(w.per_device_year)


def test_audit_head_and_chunks(store: ServiceStore) -> None:
    assert store.audit_head() is None and store.audit_rows_after(0, 10) == []
    for i in range(5):
        store.append_audit(T0, "a", "x", "s", {"i": i})
    log = store.audit_log()
    assert store.audit_head() == log[-1]
    assert [r[0] for r in store.audit_rows_after(2, 2)] == [3, 4]
    assert store.audit_seq_of(log[2].hash) == 3 and store.audit_seq_of("0" * 64) is None


def _legacy_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE devices (id TEXT PRIMARY KEY, site_id TEXT NOT NULL, doc TEXT)")
        raw.execute(
            "CREATE TABLE tickets (id TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
            " state TEXT NOT NULL, doc TEXT NOT NULL)"
        )
        _legacy_rows(raw.execute)
    raw.close()


def _legacy_rows(execute: object) -> None:
    pm = walk(
        ticket("pm", "d1", kind=TicketKind.PREVENTIVE, rule_id="schedule:preventive"),
        (Dispatch("e1", "x"), T0),
        (Accept(), T0),
        (Arrive(), T0),
        (Resolve("pm", "ok"), T0),
    )
    assert callable(execute)
    execute("INSERT INTO devices VALUES ('d1', 's1', ?)", (device("d1").model_dump_json(),))
    for t in (pm, ticket("t1", "d1")):
        execute(
            "INSERT INTO tickets VALUES (?, 'd1', ?, ?)",
            (t.id, str(t.state), t.model_dump_json(exclude={"version"})),
        )


def _legacy_postgres(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as raw:
        raw.execute(
            "CREATE TABLE service_devices (id text PRIMARY KEY, site_id text NOT NULL,"
            " doc jsonb NOT NULL)"
        )
        raw.execute(
            "CREATE TABLE service_tickets (id text PRIMARY KEY, device_id text NOT NULL,"
            " state text NOT NULL, doc jsonb NOT NULL)"
        )

        def execute(query: str, params: tuple[object, ...]) -> None:
            raw.execute(
                query.replace("?", "%s")
                .replace("INTO devices", "INTO service_devices")
                .replace("INTO tickets", "INTO service_tickets"),
                params,
            )

        _legacy_rows(execute)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rows_of_an_older_release_get_their_columns(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db: ServiceStore
    if backend == "sqlite":
        _legacy_sqlite(tmp_path / "old.db")
        db = SqliteStore(tmp_path / "old.db")
    else:
        dsn = request.getfixturevalue("timescale_dsn")
        _legacy_postgres(dsn)
        db = PostgresStore(dsn)
    assert ids(db, TicketQuery(scope=Scope(site_id="s1"))) == ["pm", "t1"]
    assert ids(db, TicketQuery(states=tuple(OPEN_STATES))) == ["t1"]
    assert db.escalations_due(T0 + hours(2.01)) == ["t1"]
    assert db.schedule_candidates(T0.date() + timedelta(days=80), ScheduleConfig()) == []
    assert [
        d.id for d in db.schedule_candidates(T0.date() + timedelta(days=92), ScheduleConfig())
    ] == ["d1"]
    db.close()


def test_a_device_row_says_where_the_patient_lies(store: ServiceStore) -> None:
    installed(store)
    bedded = device("k2", DeviceKind.PATCH, site_id="s1").model_copy(
        update={"location": Location(ward="W1", room="3", bed="B")}
    )
    store.put_device(bedded)
    rows = {r.id: r for r in store.device_rows(DeviceQuery(site_id="s1", ward="W1"))}
    assert (rows["k2"].ward, rows["k2"].room, rows["k2"].bed) == ("W1", "3", "B")
    assert rows["k1"].bed == ""  # no bed given
    assert store.device("k2") == bedded


def test_a_device_stored_before_beds_existed_has_none(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    made = SqliteStore(path)
    made.put_site(site("s1"))
    made.put_device(
        device("k1", DeviceKind.PATCH, site_id="s1").model_copy(
            update={"location": Location(ward="W1", room="3")}
        )
    )
    made.close()
    with sqlite3.connect(path) as db:  # as an earlier release left it
        db.execute("ALTER TABLE devices DROP COLUMN bed")
    reopened = SqliteStore(path)
    try:
        [row] = reopened.device_rows(DeviceQuery(site_id="s1"))
        assert (row.ward, row.room, row.bed) == ("W1", "3", "")
    finally:
        reopened.close()
