"""Auto-dispatch's reads on both stores: a region's engineers and their load, from indexes.

Auto-dispatch counts what each candidate engineer holds now. On a network with years of closed
tickets (issue 13) that count must range over held tickets only — not over every ticket the
candidates ever had, nor every held ticket of the network — so an existing database gains the
partial index of held tickets on upgrade, and the store's own query must be one the planner can
answer from it. The candidates themselves are one region's engineers, found by index too.
A page of open tickets (the lists and boards of open work) likewise reads the partial index of
open tickets in id order: the page, not every open ticket of the network.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.lifecycle import Accept, Arrive, Dispatch, Resolve
from service.model import OPEN_STATES, TicketState
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.store.queries import TicketQuery
from tests.service.factories import T0, device, engineer, site, ticket, walk

# Index names per backend: (the held tickets' index, the indexes the planner could use instead).
INDEXES = {
    "sqlite": ("tickets_held", ("tickets_assignee", "tickets_state", "tickets_state_opened")),
    "postgres": (
        "service_tickets_held",
        ("service_tickets_assignee", "service_tickets_state", "service_tickets_state_opened"),
    ),
}


def _open(backend: str, where: str) -> ServiceStore:
    return SqliteStore(where) if backend == "sqlite" else PostgresStore(where)


def _where(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return str(tmp_path / "service.db")
    return str(request.getfixturevalue("timescale_dsn"))


def _held_tickets(store: ServiceStore) -> None:
    """e1 holds t1 (dispatched) and t2 (on site), once held t3 (resolved); e2 holds t4."""
    store.put_site(site("s1"))
    store.put_device(device("d1", site_id="s1"))
    for name in ("e1", "e2", "e3"):
        store.put_engineer(engineer(name))
    store.put_ticket(walk(ticket("t1"), (Dispatch("e1", "x"), T0)))
    store.put_ticket(walk(ticket("t2"), (Dispatch("e1", "x"), T0), (Accept(), T0), (Arrive(), T0)))
    done = walk(ticket("t3"), (Dispatch("e1", "x"), T0), (Accept(), T0), (Arrive(), T0))
    store.put_ticket(walk(done, (Resolve("probe", "replaced"), T0)))
    store.put_ticket(walk(ticket("t4"), (Dispatch("e2", "x"), T0), (Accept(), T0)))
    store.put_ticket(ticket("t5"))  # open, nobody holds it


def _drop(backend: str, where: str, name: str) -> None:
    if backend == "sqlite":
        with sqlite3.connect(where) as raw:
            raw.execute(f"DROP INDEX {name}")
        raw.close()
    else:
        with psycopg.connect(where, autocommit=True) as conn:
            conn.execute(f"DROP INDEX {name}")  # type: ignore[arg-type]


def _indexes(backend: str, where: str) -> set[str]:
    if backend == "sqlite":
        with sqlite3.connect(where) as raw:
            rows = raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        raw.close()
    else:
        with psycopg.connect(where) as conn:
            rows = conn.execute("SELECT indexname FROM pg_indexes").fetchall()
    return {r[0] for r in rows}


def _statements(store: ServiceStore, call: Callable[[], object]) -> list[tuple[str, Sequence[Any]]]:
    """The statements (and parameters) ``call`` has the store read with."""
    seen: list[tuple[str, Sequence[Any]]] = []
    read = store._rows  # type: ignore[attr-defined]

    def recording(query: str, params: Sequence[Any] = ()) -> list[Any]:
        seen.append((query, params))
        return list(read(query, params))

    store._rows = recording  # type: ignore[attr-defined]
    try:
        call()
    finally:
        del store._rows  # type: ignore[attr-defined]
    return seen


def _load_query(store: ServiceStore, ids: list[str], exclude: str) -> tuple[str, Sequence[Any]]:
    """The query (and parameters) ``engineer_load`` runs."""
    [found] = _statements(store, lambda: store.engineer_load(ids, exclude))
    return found


def _plan(
    backend: str, where: str, query: str, params: Sequence[Any], others: tuple[str, ...]
) -> str:
    """The plan of ``query`` with the other candidate indexes gone (rolled back after)."""
    if backend == "sqlite":
        raw = sqlite3.connect(where, isolation_level=None)
        try:
            raw.execute("BEGIN")
            for name in others:
                raw.execute(f"DROP INDEX {name}")
            rows = raw.execute(f"EXPLAIN QUERY PLAN {query}", tuple(params)).fetchall()
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        return "\n".join(str(r[-1]) for r in rows)
    with psycopg.connect(where) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        for name in others:
            conn.execute(f"DROP INDEX {name}")  # type: ignore[arg-type]
        explain = f"EXPLAIN {query.replace('?', '%s')}"
        rows = conn.execute(explain, tuple(params)).fetchall()  # type: ignore[arg-type]
        conn.rollback()
    return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_load_counts_held_tickets_from_their_index(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = _where(backend, tmp_path, request)
    held, others = INDEXES[backend]
    store = _open(backend, where)
    _held_tickets(store)
    assert store.engineer_load(["e1", "e2", "e3"], "none") == {"e1": 2, "e2": 1}
    assert store.engineer_load(["e1"], "t2") == {"e1": 1}
    query, params = _load_query(store, ["e1", "e2"], "t1")
    store.close()
    assert held in _plan(backend, where, query, params, others)
    # A database made before the index existed gains it when the store opens it.
    _drop(backend, where, held)
    assert held not in _indexes(backend, where)
    store = _open(backend, where)
    assert held in _indexes(backend, where)
    assert store.engineer_load(["e1", "e2", "e3"], "t4") == {"e1": 2}
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_regions_engineers_come_from_an_index(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = _where(backend, tmp_path, request)
    index = "engineers_region" if backend == "sqlite" else "service_engineers_region"
    store = _open(backend, where)
    for n in range(6):
        store.put_engineer(engineer(f"e{n}", region="north" if n % 2 else "south"))
    assert [e.id for e in store.engineers(region="north")] == ["e1", "e3", "e5"]
    table = "engineers" if backend == "sqlite" else "service_engineers"
    query = f"SELECT doc FROM {table} WHERE region = ? ORDER BY id"
    assert index in _plan(backend, where, query, ("north",), ())
    store.close()
    # A database made before the index existed gains it when the store opens it.
    _drop(backend, where, index)
    store = _open(backend, where)
    assert index in _indexes(backend, where)
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_page_of_open_tickets_reads_the_open_tickets_index(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = _where(backend, tmp_path, request)
    index = "tickets_open" if backend == "sqlite" else "service_tickets_open"
    others = INDEXES[backend][1]
    store = _open(backend, where)
    _held_tickets(store)
    open_page = TicketQuery(states=tuple(OPEN_STATES), limit=3)
    assert [t.id for t, _ in store.ticket_page(open_page)] == ["t1", "t2", "t4"]
    some = TicketQuery(states=(TicketState.RESOLVED,), limit=3)
    assert [t.id for t, _ in store.ticket_page(some)] == ["t3"]  # other sets: as before
    query, params = _statements(store, lambda: store.ticket_page(open_page))[0]
    store.close()
    assert index in _plan(backend, where, query, params, others)
    # A database made before the index existed gains it when the store opens it.
    _drop(backend, where, index)
    _open(backend, where).close()
    assert index in _indexes(backend, where)
