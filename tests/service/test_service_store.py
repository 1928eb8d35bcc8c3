"""Repository contract: every ServiceStore implementation (SQLite, PostgreSQL) must pass these."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from service.audit import verify
from service.lifecycle import Dispatch
from service.model import (
    Channel,
    Delivery,
    Location,
    OutboxItem,
    OutboxStatus,
    Patient,
    TicketState,
)
from service.store import ServiceStore, SqliteStore, open_service_store
from service.store_postgres import PostgresStore
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
    store.put_ticket(a)
    store.put_ticket(b)
    assert store.ticket("a") == a
    assert [t.id for t in store.tickets(states=[TicketState.OPEN])] == ["b"]
    assert [t.id for t in store.tickets(device_ids=["d1"])] == ["a"]
    assert store.tickets(states=[]) == []
    store.put_ticket(a.model_copy(update={"state": TicketState.ACCEPTED}))
    assert [t.id for t in store.tickets(states=[TicketState.ACCEPTED])] == ["a"]


def test_audit_log_chains_in_the_store(store: ServiceStore) -> None:
    for i in range(3):
        store.append_audit(T0 + timedelta(minutes=i), "e1", "transition", "t1", {"i": i})
    entries = store.audit_log()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert verify(entries).ok


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
    db.put_ticket(ticket("a"))
    db.close()
    again = SqliteStore(path)
    assert again.ticket("a") == ticket("a")
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
    db.put_ticket(ticket("a"))
    db.append_audit(T0, "e1", "x", "a", {"note": "ünïcode", "n": 1.5})
    db.close()
    again = open_service_store(f"postgresql://{_url_of(timescale_dsn)}")
    assert again.ticket("a") == ticket("a")
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
