"""Repository contract: every ServiceStore implementation (SQLite, PostgreSQL) must pass these."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import date, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from infra.errors import StorageUnavailable
from service.audit import verify
from service.concurrency import ConcurrentUpdate
from service.lifecycle import Dispatch
from service.model import (
    Channel,
    DeadLetter,
    Delivery,
    Location,
    OutboxItem,
    OutboxStatus,
    Patient,
    TicketState,
    Tier,
)
from service.store import PostgresStore, ServiceStore, SqliteStore, open_service_store
from service.store.queries import DeviceQuery, FleetRow, TicketQuery
from tests.service.factories import T0, device, engineer, site, ticket, walk


@pytest.fixture(params=["memory", "file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    db: ServiceStore
    if request.param == "postgres":
        # A fresh database on the session's real PostgreSQL server.
        db = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(":memory:" if request.param == "memory" else tmp_path / "service.db")
    yield db
    db.close()


def test_installed_base_round_trips(store: ServiceStore) -> None:
    store.put_site(site("s1"))
    store.put_site(site("s2", region="south"))
    d = device("d1").model_copy(update={"location": Location(ward="ICU", room="3")})
    store.put_device(d)
    store.put_device(device("d2", site_id="s2"))
    store.put_patient(Patient(id="p-7f3a", site_id="s1", kit=("d9",)))
    store.put_engineer(engineer("e1"))
    store.put_engineer(engineer("e2", region="south"))
    assert store.site("s1") == site("s1") and store.site("nope") is None
    assert [s.id for s in store.sites()] == ["s1", "s2"]
    assert store.device("d1") == d
    assert [x.id for x in store.devices(site_id="s2")] == ["d2"]
    assert store.patient("p-7f3a") == Patient(id="p-7f3a", site_id="s1", kit=("d9",))
    assert store.engineer("e1") == engineer("e1")
    assert [e.id for e in store.engineers(region="south")] == ["e2"]


def test_tickets_round_trip_and_filter(store: ServiceStore) -> None:
    a = walk(ticket("a"), (Dispatch("e1", "nearest"), T0))
    b = ticket("b", device_id="d2")
    stored = store.put_ticket(a)
    store.put_ticket(b)
    assert stored == a.model_copy(update={"version": 1})
    assert store.ticket("a") == stored
    assert [t.id for t in store.tickets(states=[TicketState.OPEN])] == ["b"]
    assert [t.id for t in store.tickets(device_ids=["d1"])] == ["a"]
    assert store.tickets(states=[]) == []
    accepted = store.put_ticket(stored.model_copy(update={"state": TicketState.ACCEPTED}))
    assert accepted.version == 2
    assert store.tickets(states=[TicketState.ACCEPTED]) == [accepted]


def test_fleet_rows_read_what_reports_count_without_the_documents(store: ServiceStore) -> None:
    odd = device("d2", model='MX "9"', warranty_end=date(2027, 2, 28))
    store.put_device(odd.model_copy(update={"serial": 'SN é "2" \\ x'}))
    store.put_device(device("d1", installed_on=date(2019, 12, 31)))
    store.put_device(device("d3", site_id="s2"))
    rows = store.fleet_rows(DeviceQuery(site_id="s1", limit=None))
    assert rows == [
        FleetRow("d1", "s1", "EX-100", "SN-d1", date(2019, 12, 31), None),
        FleetRow("d2", "s1", 'MX "9"', 'SN é "2" \\ x', date(2024, 1, 1), date(2027, 2, 28)),
    ]
    for row in rows:  # the same fields as the documents
        full = store.device(row.id)
        assert full is not None
        assert row == FleetRow(
            full.id, full.site_id, full.model, full.serial, full.installed_on, full.warranty_end
        )
    assert store.fleet_rows(DeviceQuery(site_id="s9", limit=None)) == []


def test_tickets_by_opening_window_and_devices(store: ServiceStore) -> None:
    for d in ("d1", "d2", "d3"):
        store.put_device(device(d))
    for n, (d, hours) in enumerate((("d1", 0), ("d2", 1), ("d3", 2), ("d1", 3), ("d2", 4))):
        store.put_ticket(ticket(f"t{n}", device_id=d, at=T0 + timedelta(hours=hours)))

    def ids(query: TicketQuery) -> list[str]:
        return [t.id for t, _ in store.ticket_page(query)]

    since, before = T0 + timedelta(hours=1), T0 + timedelta(hours=4)
    assert ids(TicketQuery(opened_since=since, opened_before=before, limit=None)) == [
        "t1",
        "t2",
        "t3",
    ]
    assert ids(TicketQuery(device_ids=("d1", "d3"), limit=None)) == ["t0", "t2", "t3"]
    assert ids(TicketQuery(device_ids=("d2",), opened_since=since, limit=None)) == ["t1", "t4"]
    assert ids(TicketQuery(site_id="s1", device_ids=(), limit=None)) == []


def test_a_stale_ticket_write_is_refused(store: ServiceStore) -> None:
    store.put_ticket(ticket("a"))
    mine, theirs = store.ticket("a"), store.ticket("a")
    assert mine is not None and theirs is not None
    store.put_ticket(theirs.model_copy(update={"title": "theirs"}))
    with pytest.raises(ConcurrentUpdate, match="changed since it was read at version 1"):
        store.put_ticket(mine.model_copy(update={"title": "mine"}))
    current = store.ticket("a")
    assert current is not None and (current.title, current.version) == ("theirs", 2)


def test_inserting_a_ticket_twice_is_refused(store: ServiceStore) -> None:
    store.put_ticket(ticket("a"))
    with pytest.raises(ConcurrentUpdate, match="already exists"):
        store.put_ticket(ticket("a").model_copy(update={"title": "again"}))
    assert store.ticket("a") == ticket("a").model_copy(update={"version": 1})


def test_a_refused_write_rolls_back_its_transaction(store: ServiceStore) -> None:
    store.put_ticket(ticket("a"))
    stale = store.ticket("a")
    assert stale is not None
    store.put_ticket(stale)  # now at version 2
    with pytest.raises(ConcurrentUpdate), store.atomic():
        store.append_audit(T0, "e1", "x", "a", {})
        store.put_ticket(stale)
    assert store.audit_log() == []


def test_dead_letters_are_kept_newest_first(store: ServiceStore) -> None:
    letters = [
        DeadLetter(received_at=T0 + timedelta(seconds=i), topic=f"t/{i}", reason="bad", payload=p)
        for i, p in enumerate([b"{", b"\x00\xff", b""])
    ]
    for letter in letters:
        store.dead_letter(letter)
    assert store.dead_letters() == letters[::-1]
    assert store.dead_letters(limit=1) == [letters[-1]]


def test_audit_log_chains_in_the_store(store: ServiceStore) -> None:
    for i in range(3):
        store.append_audit(T0 + timedelta(minutes=i), "e1", "transition", "t1", {"i": i})
    entries = store.audit_log()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert verify(entries).ok


def test_a_transaction_chains_its_audit_entries_and_a_rollback_forgets_them(
    store: ServiceStore,
) -> None:
    with store.atomic():
        for i in range(3):
            store.append_audit(T0, "e1", "x", "t1", {"i": i})
    with pytest.raises(RuntimeError), store.atomic():
        store.append_audit(T0, "e1", "x", "t1", {"i": "lost"})
        raise RuntimeError("rolled back")
    store.append_audit(T0, "e1", "x", "t1", {"i": 3})  # chained on entry 3, not the lost one
    entries = store.audit_log()
    assert [e.data["i"] for e in entries] == [0, 1, 2, 3] and verify(entries).ok


def test_each_postgres_transaction_reads_the_audit_chain_afresh(timescale_dsn: str) -> None:
    one, other = PostgresStore(timescale_dsn), PostgresStore(timescale_dsn)  # two processes
    with one.atomic():
        one.append_audit(T0, "one", "x", "t1", {})
        one.append_audit(T0, "one", "x", "t1", {})
    other.append_audit(T0, "other", "x", "t1", {})
    with one.atomic():
        one.append_audit(T0, "one", "x", "t1", {})
    entries = one.audit_log()
    assert [e.actor for e in entries] == ["one", "one", "other", "one"] and verify(entries).ok
    one.close()
    other.close()


def test_a_device_replaced_in_a_transaction_is_read_back_replaced(timescale_dsn: str) -> None:
    store = PostgresStore(timescale_dsn)
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1"))
    with store.atomic():
        first = store.device("d1")
        assert first is not None and first.site_id == "s1"
        store.put_device(device("d1", site_id="s2"))
        moved = store.device("d1")
        assert moved is not None and moved.site_id == "s2"
        store.put_ticket(ticket("a", device_id="d1"))  # placed where the device now stands
        assert store.device("ghost") is None
        store.put_device(device("ghost"))
        assert store.device("ghost") is not None
    with psycopg.connect(timescale_dsn) as conn:
        row = conn.execute("SELECT site_id FROM service_tickets WHERE id = 'a'").fetchone()
    assert row == ("s2",)
    store.close()


def test_audit_rows_cannot_be_updated_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = SqliteStore(path)
    db.append_audit(T0, "e1", "x", "t1", {})
    db.close()
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit_log")
    raw.close()


def test_concurrent_audit_appends_keep_one_chain(store: ServiceStore) -> None:
    def work(n: int) -> None:
        for i in range(20):
            store.append_audit(T0, f"w{n}", "x", "t", {"i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = store.audit_log()
    assert len(entries) == 80 and verify(entries).ok


def test_atomic_rolls_back_everything(store: ServiceStore) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        store.put_ticket(ticket("a"))
        store.append_audit(T0, "e1", "open", "a", {})
        raise RuntimeError("boom")
    assert store.ticket("a") is None and store.audit_log() == []


def test_deliveries_are_kept_in_order(store: ServiceStore) -> None:
    first = Delivery(event_id="ev1", url="http://x", attempt=1, at=T0, status=500, error="500")
    second = Delivery(event_id="ev1", url="http://x", attempt=2, at=T0, status=200, ok=True)
    store.record_delivery(first)
    store.record_delivery(second)
    store.record_delivery(Delivery(event_id="ev2", url="http://x", attempt=1, at=T0))
    assert store.deliveries("ev1") == [first, second]
    assert len(store.deliveries()) == 3


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = SqliteStore(path)
    stored = db.put_ticket(ticket("a"))
    db.close()
    again = SqliteStore(path)
    assert again.ticket("a") == stored
    again.close()


def test_postgres_audit_rows_cannot_be_changed(timescale_dsn: str) -> None:
    db = PostgresStore(timescale_dsn)
    db.append_audit(T0, "e1", "x", "t1", {})
    db.close()
    with psycopg.connect(timescale_dsn, autocommit=True) as raw:
        for statement in (
            "UPDATE service_audit_log SET actor = 'mallory'",
            "DELETE FROM service_audit_log",
            "TRUNCATE service_audit_log",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                raw.execute(statement)  # type: ignore[arg-type]


def test_postgres_data_survives_reopening(timescale_dsn: str) -> None:
    db = PostgresStore(timescale_dsn)
    stored = db.put_ticket(ticket("a"))
    db.append_audit(T0, "e1", "x", "a", {"note": "ünïcode", "n": 1.5})
    db.close()
    again = open_service_store(f"postgresql://{_url_of(timescale_dsn)}")
    assert again.ticket("a") == stored
    assert verify(again.audit_log()).ok
    again.close()


def test_two_processes_worth_of_connections_keep_one_chain(timescale_dsn: str) -> None:
    stores = [PostgresStore(timescale_dsn) for _ in range(3)]

    def work(db: PostgresStore, n: int) -> None:
        for i in range(15):
            db.append_audit(T0, f"w{n}", "x", "t", {"i": i})

    threads = [threading.Thread(target=work, args=(db, n)) for n, db in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = stores[0].audit_log()
    assert len(entries) == 45 and verify(entries).ok
    for db in stores:
        db.close()


def _url_of(dsn: str) -> str:
    """``user@host:port/dbname`` from the fixture's keyword DSN."""
    kv = dict(part.split("=", 1) for part in dsn.split())
    return f"{kv['user']}@{kv['host']}:{kv['port']}/{kv['dbname']}"


def _item(key: str, *, next_s: float = 0, event_id: str = "ev1") -> OutboxItem:
    at = T0 + timedelta(seconds=next_s)
    return OutboxItem(
        key=key,
        event_id=event_id,
        channel=Channel.WEBHOOK,
        target="http://x/h",
        role="service",
        subject="team",
        event="ticket.opened",
        payload={"ticket_id": "a", "n": 1.5},
        created_at=T0,
        next_at=at,
    )


def test_outbox_commits_and_rolls_back_with_the_ticket(store: ServiceStore) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        store.put_ticket(ticket("a"))
        store.append_audit(T0, "e1", "open", "a", {})
        store.enqueue_notifications([_item("k1")])
        store.set_cursor("breach_scan", T0)
        raise RuntimeError("crash before commit")
    assert store.ticket("a") is None and store.notifications() == []
    assert store.cursor("breach_scan") is None
    with store.atomic():
        store.put_ticket(ticket("a"))
        store.append_audit(T0, "e1", "open", "a", {})
        store.enqueue_notifications([_item("k1")])
    assert store.pending_notifications() == [_item("k1")]


def test_outbox_takes_a_repeated_key_of_one_batch_once(store: ServiceStore) -> None:
    store.enqueue_notifications([])
    store.enqueue_notifications([_item("k1"), _item("k1", next_s=5), _item("k2", next_s=1)])
    assert [(i.key, i.next_at) for i in store.pending_notifications()] == [
        ("k1", T0),
        ("k2", T0 + timedelta(seconds=1)),
    ]


def test_outbox_pending_order_updates_and_duplicates(store: ServiceStore) -> None:
    store.enqueue_notifications([_item("late", next_s=60), _item("soon", event_id="ev2")])
    store.enqueue_notifications([_item("soon", next_s=999, event_id="ev2")])  # ignored: same key
    assert [i.key for i in store.pending_notifications()] == ["soon", "late"]
    assert store.pending_notifications()[0].next_at == T0
    done = _item("soon", event_id="ev2").model_copy(
        update={"attempts": 1, "status": OutboxStatus.DONE}
    )
    failed = _item("late", next_s=60).model_copy(
        update={"attempts": 5, "status": OutboxStatus.FAILED, "last_error": "HTTP 503"}
    )
    store.update_notification(done)
    store.update_notification(failed)
    assert store.pending_notifications() == []
    assert store.notifications("ev2") == [done]
    assert store.notifications() == [failed, done]  # failed ones are kept, never dropped


def test_cursor_round_trips_in_utc(store: ServiceStore) -> None:
    assert store.cursor("breach_scan") is None
    store.set_cursor("breach_scan", T0)
    later = (T0 + timedelta(hours=3)).astimezone(timezone(timedelta(hours=2)))
    store.set_cursor("breach_scan", later)
    assert store.cursor("breach_scan") == later and store.cursor("other") is None


_LEGACY_TICKETS = {
    "sqlite": "CREATE TABLE tickets (id TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
    " state TEXT NOT NULL, doc TEXT NOT NULL)",
    "postgres": "CREATE TABLE service_tickets (id text PRIMARY KEY, device_id text NOT NULL,"
    " state text NOT NULL, doc jsonb NOT NULL)",
}


def test_sqlite_tickets_of_an_older_release_get_a_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute(_LEGACY_TICKETS["sqlite"])
        raw.execute("INSERT INTO tickets VALUES ('a', 'd1', 'open', ?)", (_legacy_doc(),))
    raw.close()
    db = SqliteStore(path)
    old = db.ticket("a")
    assert old == ticket("a").model_copy(update={"version": 1})
    assert db.put_ticket(old.model_copy(update={"title": "moved on"})).version == 2
    db.close()
    SqliteStore(path).close()  # a second open migrates nothing


def test_postgres_tickets_of_an_older_release_get_a_version(timescale_dsn: str) -> None:
    with psycopg.connect(timescale_dsn, autocommit=True) as raw:
        raw.execute(_LEGACY_TICKETS["postgres"])  # type: ignore[arg-type]
        raw.execute("INSERT INTO service_tickets VALUES ('a', 'd1', 'open', %s)", (_legacy_doc(),))
    db = PostgresStore(timescale_dsn)
    old = db.ticket("a")
    assert old == ticket("a").model_copy(update={"version": 1})
    assert db.put_ticket(old.model_copy(update={"title": "moved on"})).version == 2
    db.close()
    PostgresStore(timescale_dsn).close()


def _legacy_doc() -> str:
    """A ticket document as releases before the version column wrote it."""
    doc = ticket("a").model_dump_json(exclude={"version"})
    assert "version" not in doc
    return doc


def test_sqlite_write_lock_held_elsewhere_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder, waiter = SqliteStore(path), SqliteStore(path, busy_timeout_s=0.1)
    with holder.atomic():
        holder.put_site(site("s1"))
        with pytest.raises(StorageUnavailable, match="locked"):
            waiter.put_site(site("s2"))
    waiter.put_site(site("s2"))  # the same write succeeds once the lock is released
    assert [s.id for s in waiter.sites()] == ["s1", "s2"]
    holder.close()
    waiter.close()


def test_postgres_lost_mid_transaction_is_storage_unavailable(timescale_dsn: str) -> None:
    db = PostgresStore(timescale_dsn)
    db.put_site(site("s0"))
    with psycopg.connect(timescale_dsn, autocommit=True) as admin:
        with pytest.raises(StorageUnavailable, match="mid-transaction"), db.atomic():
            db.put_site(site("s1"))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            db.put_site(site("s2"))
        # The next call reconnects; nothing of the lost transaction was kept.
        assert [s.id for s in db.sites()] == ["s0"]
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        db.put_site(site("s1"))  # an idle connection found dead is replaced before the write
    assert [s.id for s in db.sites()] == ["s0", "s1"]
    db.close()


def test_racing_writers_on_two_connections_lose_no_update(timescale_dsn: str) -> None:
    """Each thread appends its own evidence through its own connection; every append lands."""
    stores = [PostgresStore(timescale_dsn) for _ in range(2)]
    stores[0].put_ticket(ticket("a"))
    conflicts = [0, 0]

    def work(n: int) -> None:
        db = stores[n]
        for i in range(25):
            while True:
                current = db.ticket("a")
                assert current is not None
                title = f"{current.title}|{n}.{i}"
                try:
                    db.put_ticket(current.model_copy(update={"title": title}))
                    break
                except ConcurrentUpdate:
                    conflicts[n] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = stores[0].ticket("a")
    assert final is not None and final.version == 51
    marks = final.title.split("|")[1:]
    assert sorted(marks) == sorted(f"{n}.{i}" for n in range(2) for i in range(25))
    print(f"conflicts retried: {conflicts}")
    for db in stores:
        db.close()


def test_store_urls_open_the_right_store(tmp_path: Path) -> None:
    db = open_service_store(f"sqlite:///{tmp_path}/nested/dir/s.db")
    assert isinstance(db, SqliteStore)
    db.close()
    for bad, message in (
        ("sqlite:///", "no database path"),
        ("mysql://user:secret@db/vigil", "scheme 'mysql'"),
        ("just-a-name", "no scheme"),
    ):
        with pytest.raises(ValueError, match=message) as error:
            open_service_store(bad)
        assert "secret" not in str(error.value)


# Retention: finished notifications, delivery attempts and dead letters go by age.
DAY = timedelta(days=1)


def _finished(key: str, status: OutboxStatus, days_ago: float) -> OutboxItem:
    return _item(key, next_s=-days_ago * 86_400).model_copy(
        update={"attempts": 1, "status": status}
    )


def test_prune_notifications_keeps_pending_and_recent(store: ServiceStore) -> None:
    old_done, old_failed = (
        _finished("a", OutboxStatus.DONE, 10),
        _finished("b", OutboxStatus.FAILED, 10),
    )
    new_done = _finished("c", OutboxStatus.DONE, 1)
    old_pending = _item("d", next_s=-10 * 86_400)  # never delivered: kept however old
    store.enqueue_notifications([old_done, old_failed, new_done, old_pending])
    cutoff = T0 - 5 * DAY

    dry = store.prune_notifications(cutoff, dry_run=True)
    assert (dry.kind, dry.rows) == ("notifications", 2)
    assert len(store.notifications()) == 4
    assert store.prune_notifications(cutoff).rows == 2
    assert [i.key for i in store.notifications()] == ["c", "d"]
    assert store.pending_notifications() == [old_pending]


def test_prune_deliveries_by_attempt_time(store: ServiceStore) -> None:
    attempts = [
        Delivery(event_id="ev1", url="http://x", attempt=n, at=T0 - days * DAY, status=200)
        for n, days in enumerate((30, 10, 1, 0), start=1)
    ]
    for attempt in attempts:
        store.record_delivery(attempt)
    assert store.prune_deliveries(T0 - 5 * DAY, dry_run=True).rows == 2
    assert len(store.deliveries()) == 4
    assert store.prune_deliveries(T0 - 5 * DAY).rows == 2
    assert store.deliveries() == attempts[2:]


def test_prune_dead_letters_by_age(store: ServiceStore) -> None:
    # Microseconds and other offsets on purpose: the cutoff compares instants, not text.
    letters = [
        DeadLetter(received_at=at, topic="t", reason="bad", payload=b"{")
        for at in (
            T0 - 10 * DAY,
            (T0 - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=8))),
            T0,
            T0 + timedelta(microseconds=500),
        )
    ]
    for letter in letters:
        store.dead_letter(letter)
    assert store.prune_dead_letters(T0, dry_run=True).rows == 2
    assert store.prune_dead_letters(T0).rows == 2
    assert store.dead_letters() == letters[:1:-1]


def test_sqlite_prunes_in_bounded_transactions(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "s.db")
    db.prune_chunk_rows = 3
    for n in range(7):
        db.record_delivery(Delivery(event_id="e", url="http://x", attempt=n + 1, at=T0 - DAY))
    assert db.prune_deliveries(T0).rows == 7 and db.deliveries() == []
    db.close()


_LEGACY_DELIVERIES = {
    "sqlite": "CREATE TABLE deliveries (n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " event_id TEXT NOT NULL, doc TEXT NOT NULL)",
    "postgres": "CREATE TABLE service_deliveries (n bigserial PRIMARY KEY,"
    " event_id text NOT NULL, doc jsonb NOT NULL)",
}
_OLD_ATTEMPTS = [
    Delivery(event_id="e", url="http://x", attempt=1, at=T0 - 10 * DAY + timedelta(microseconds=7)),
    Delivery(event_id="e", url="http://x", attempt=2, at=T0),
]


def test_sqlite_deliveries_of_an_older_release_get_their_time(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute(_LEGACY_DELIVERIES["sqlite"])
        raw.executemany(
            "INSERT INTO deliveries (event_id, doc) VALUES (?, ?)",
            [(d.event_id, d.model_dump_json()) for d in _OLD_ATTEMPTS],
        )
    raw.close()
    db = SqliteStore(path)
    assert db.prune_deliveries(T0 - DAY).rows == 1
    assert db.deliveries() == _OLD_ATTEMPTS[1:]
    db.close()


def test_postgres_deliveries_of_an_older_release_get_their_time(timescale_dsn: str) -> None:
    with psycopg.connect(timescale_dsn, autocommit=True) as raw:
        raw.execute(_LEGACY_DELIVERIES["postgres"])  # type: ignore[arg-type]
        for d in _OLD_ATTEMPTS:
            raw.execute(
                "INSERT INTO service_deliveries (event_id, doc) VALUES (%s, %s)",
                (d.event_id, d.model_dump_json()),
            )
    db = PostgresStore(timescale_dsn)
    assert db.prune_deliveries(T0 - DAY).rows == 1
    assert db.deliveries() == _OLD_ATTEMPTS[1:]
    db.close()


def test_undispatched_tickets_are_listed_oldest_first_in_pages(store: ServiceStore) -> None:
    store.put_site(site("s1"))
    store.put_device(device("d1"))
    for n in range(5):
        store.put_ticket(ticket(f"t{n}", at=T0 + timedelta(minutes=5 - n)))
    store.put_ticket(walk(ticket("held", at=T0), (Dispatch("e1", "x"), T0)))
    assert store.undispatched(10) == ["t4", "t3", "t2", "t1", "t0"]
    first = store.undispatched(2)
    assert first == ["t4", "t3"]
    after = (int((T0 + timedelta(minutes=2)).timestamp() * 1_000_000), "t3")
    assert store.undispatched(2, after) == ["t2", "t1"]
    assert store.undispatched(0) == []


def test_service_credits_are_kept_once_paged_and_summed(store: ServiceStore) -> None:
    from service.compensation import ServiceCredit
    from service.sla import Clock
    from service.store.aggregates import CreditTotals
    from service.store.queries import CreditQuery, Scope

    def credit(key: str, site_id: str, minutes: int, amount: int, currency: str) -> ServiceCredit:
        return ServiceCredit(
            key=key,
            ticket_id=f"t-{key}",
            device_id="d1",
            site_id=site_id,
            clock=Clock.RESOLVE,
            tier=Tier.GENERAL,
            breach_at=T0 + timedelta(minutes=minutes),
            amount_minor=amount,
            currency=currency,
            created_at=T0,
            reason="late",
        )

    kept = [credit("a", "s1", 1, 100, "EUR"), credit("b", "s1", 2, 250, "EUR")]
    kept += [credit("c", "s2", 2, 999, "CHF"), credit("d", "s1", 3, 50, "CHF")]
    assert all(store.put_credit(c) for c in kept)
    assert not store.put_credit(credit("a", "s1", 1, 1, "EUR"))  # the key is kept once
    assert store.credits(CreditQuery()) == [kept[0], kept[1], kept[2], kept[3]]
    page = store.credits(CreditQuery(scope=Scope(site_id="s1"), limit=2))
    assert page == kept[:2]
    after = (int(page[-1].breach_at.timestamp() * 1_000_000), page[-1].key)
    assert store.credits(CreditQuery(site_id="s1", after=after)) == [kept[3]]
    assert store.credit_totals(CreditQuery()) == [
        CreditTotals("CHF", 2, 1049),
        CreditTotals("EUR", 2, 350),
    ]
    window = CreditQuery(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=3))
    assert store.credit_totals(window) == [CreditTotals("CHF", 1, 999), CreditTotals("EUR", 1, 250)]


def test_knowledge_is_found_by_model_code_and_text(store: ServiceStore) -> None:
    from service.knowledge import Fix, KnowledgeEntry
    from service.store.queries import KnowledgeQuery

    def entry(model: str, code: str, title: str) -> KnowledgeEntry:
        fix = Fix(text=f"replace the {title}", parts=(f"P-{code}",))
        return KnowledgeEntry(model=model, code=code, title=title, causes=("wear",), fixes=(fix,))

    fan = entry("EX-100", "fan", "Fan 100% stuck_")
    store.put_knowledge(fan)
    store.put_knowledge(entry("any", "fan", "Generic fan"))
    store.put_knowledge(entry("EX-200", "fan", "Other model's fan"))
    store.put_knowledge(entry("EX-100", "probe", "Probe cable"))
    assert [(e.model, e.code) for e in store.knowledge_for("EX-100", ["fan", "nope"])] == [
        ("EX-100", "fan"),
        ("any", "fan"),
    ]
    assert store.knowledge_for("EX-100", []) == []
    # Replacing keeps one row per (model, code).
    store.put_knowledge(fan.model_copy(update={"title": "Fan 100% stuck_ (v2)"}))
    assert [e.title for e in store.knowledge_page(KnowledgeQuery(code="fan", model="EX-100"))] == [
        "Fan 100% stuck_ (v2)"
    ]

    def found(**kwargs: object) -> list[str]:
        return [f"{e.model}/{e.code}" for e in store.knowledge_page(KnowledgeQuery(**kwargs))]  # type: ignore[arg-type]

    # Full text: every word, in any order, stemmed, as a prefix; punctuation separates words.
    assert found(text="FAN") == ["EX-100/fan", "EX-200/fan", "any/fan"]
    assert found(text="stuck fan") == ["EX-100/fan"]
    assert found(text="stu") == ["EX-100/fan"]
    assert found(text="replacing cables") == ["EX-100/probe"]
    assert found(text="the generic fan") == ["any/fan"]  # stop words are left out
    assert found(text="p-probe") == ["EX-100/probe"]
    assert found(text="ex-200 fan") == ["EX-200/fan"]
    # No search text is query syntax: quotes, operators and wildcards are only separators.
    assert found(text='fan" OR "probe') == []
    assert found(text="NOT fan") == found(text="fan")  # "not" is a (stop) word, not an operator
    assert found(text="fan* -probe") == []
    assert found(text="%_") == [] and found(text="the") == []
    assert found(limit=2) == ["EX-100/fan", "EX-100/probe"]
    assert found(after=("EX-100", "probe"), limit=2) == ["EX-200/fan", "any/fan"]


def test_stock_is_reserved_consumed_released_and_flagged_low(store: ServiceStore) -> None:
    from service.store.queries import StockQuery

    fan = store.put_stock("north", "FAN-12", on_hand=3, low_at=1)
    assert (fan.available, fan.low) == (3, False)
    store.put_stock("north", "CON-7", on_hand=0, low_at=0)
    store.put_stock("south", "FAN-12", on_hand=9, low_at=2)
    assert store.reserve("t1", "north", "FAN-12", 2)
    assert not store.reserve("t2", "north", "FAN-12", 2)  # only one left
    assert not store.reserve("t2", "north", "NOPE", 1)
    assert store.reserve("t1", "north", "FAN-12", 0) or True  # a zero hold changes nothing
    held = store.stock("north", "FAN-12")
    assert held is not None and (held.on_hand, held.reserved, held.low) == (3, 2, True)
    assert [(r.part, r.quantity) for r in store.reservations("t1")] == [("FAN-12", 2)]
    assert [(s.warehouse, s.part) for s in store.low_stock_unalerted(10)] == [
        ("north", "CON-7"),
        ("north", "FAN-12"),
    ]
    assert store.mark_stock_alerted("north", "FAN-12")
    assert not store.mark_stock_alerted("north", "FAN-12")  # told once per fall
    assert not store.mark_stock_alerted("south", "FAN-12")  # not low
    # One fan used: it comes out of the hold; the other held one goes back.
    store.consume("t1", "north", {"FAN-12": 1})
    after = store.stock("north", "FAN-12")
    assert after is not None and (after.on_hand, after.reserved) == (2, 0)
    assert store.reservations("t1") == []
    assert after.low is False  # 2 available > 1: re-armed
    assert [s.part for s in store.low_stock_unalerted(10)] == ["CON-7"]
    # Restocking keeps holds; a new fall is told again.
    assert store.reserve("t3", "north", "FAN-12", 1)
    store.put_stock("north", "FAN-12", on_hand=1, low_at=1)
    again = store.stock("north", "FAN-12")
    assert again is not None and (again.on_hand, again.reserved, again.low) == (1, 1, True)
    assert store.mark_stock_alerted("north", "FAN-12")
    store.release("t3")
    released = store.stock("north", "FAN-12")
    assert released is not None and released.reserved == 0
    assert [(s.warehouse, s.part) for s in store.stock_page(StockQuery(limit=2))] == [
        ("north", "CON-7"),
        ("north", "FAN-12"),
    ]
    page2 = store.stock_page(StockQuery(after=("north", "FAN-12")))
    assert [(s.warehouse, s.part) for s in page2] == [("south", "FAN-12")]
    low = store.stock_page(StockQuery(low_only=True))
    assert [(s.warehouse, s.part) for s in low] == [("north", "CON-7"), ("north", "FAN-12")]


def test_harm_flags_are_kept_once_and_paged(store: ServiceStore) -> None:
    from service.vigilance import HarmFlag

    flags = [
        HarmFlag(
            ticket_id=f"t{n}",
            flagged_at=T0 + timedelta(minutes=n % 2),
            flagged_by="hospital:s1",
            description="burn under the dressing",
        )
        for n in range(3)
    ]
    assert all(store.flag_harm(f) for f in flags)
    assert not store.flag_harm(flags[0].model_copy(update={"description": "again"}))
    assert store.harm_flag("t0") == flags[0] and store.harm_flag("nope") is None
    assert [f.ticket_id for f in store.harm_flags(10)] == ["t0", "t2", "t1"]
    after = (int(T0.timestamp() * 1_000_000), "t2")
    assert [f.ticket_id for f in store.harm_flags(10, after)] == ["t1"]
    assert [f.ticket_id for f in store.harm_flags(1)] == ["t0"]
