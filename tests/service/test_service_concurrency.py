"""Two worker processes and a person change one ticket at once: no change is lost.

Each process appends alert evidence to the same open ticket through its own store; meanwhile
the test walks the ticket through the lifecycle as the API would, retrying after a
ConcurrentUpdate (the 409 a person's client gets). Every event's effect must be on the ticket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import AlertEvent, AlertTransition, Severity
from infra.errors import StorageUnavailable
from service import desk
from service.alert_consumer import intake
from service.audit import verify
from service.concurrency import ConcurrentUpdate
from service.intake import alert_time
from service.lifecycle import Accept, Arrive, Depart, Event, Pause, Resume
from service.model import TicketState
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.worker import WorkerSettings
from tests.service.factories import device, engineer, site

ROOT = Path(__file__).resolve().parents[2]
BASE_US = 1_772_442_000_000_000
PER_PROCESS = 30

# One worker process: PER_PROCESS alerts for d1/scope.leak, each held and retried on an outage
# (SQLite's write lock) exactly as the consume loop would; races are retried by intake itself.
APPEND_EVIDENCE = """
import logging, sys, time
from datetime import UTC, datetime
from contract import AlertEvent, AlertTransition, Severity
from infra.errors import InfrastructureUnavailable
from service.alert_consumer import intake
from service.store import open_service_store
from service.worker import WorkerSettings

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
url, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = open_service_store(url)
for i in range(count):
    alert = AlertEvent(
        device_id="d1", rule_id="scope.leak", severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED, at_us=BASE_US + 1000 * (worker + 1) + i,
    )
    while True:
        try:
            intake(store, alert, datetime.now(UTC), WorkerSettings())
            break
        except InfrastructureUnavailable as exc:
            print("held:", exc)
            time.sleep(0.01)
store.close()
""".replace("BASE_US", str(BASE_US))

STEPS: tuple[Event, ...] = (Accept(), Arrive(), Pause("no access"), Resume(), Depart(), Arrive())


def first_alert() -> AlertEvent:
    """The alert that opens the ticket."""
    return AlertEvent(
        device_id="d1",
        rule_id="scope.leak",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=BASE_US,
    )


@pytest.fixture(params=["postgres", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield request.getfixturevalue("timescale_dsn")
    else:
        yield f"sqlite:///{tmp_path / 'service.db'}"


def open_store(url: str) -> ServiceStore:
    """The store at ``url`` (short busy timeout for SQLite so lock waits show as outages)."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), busy_timeout_s=0.5)
    return PostgresStore(url)


def walk_lifecycle(store: ServiceStore, ticket_id: str) -> int:
    """Apply every step as a person would, trying again after a 409 (or 503); the 409s."""
    conflicts = 0
    for step in STEPS:
        while True:
            try:
                desk.apply(store, ticket_id, step, "e1", datetime.now(UTC))
                break
            except ConcurrentUpdate:
                conflicts += 1
            except StorageUnavailable:
                time.sleep(0.01)  # SQLite's write lock held by a worker process
    return conflicts


@pytest.mark.services
def test_two_processes_and_a_person_lose_no_ticket_change(store_url: str) -> None:
    store = open_store(store_url)
    store.put_site(site("s1"))
    store.put_device(device("d1"))
    store.put_engineer(engineer("e1"))
    opened, created = intake(store, first_alert(), datetime.now(UTC), WorkerSettings())
    assert opened is not None and created and opened.assignee == "e1"

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND_EVIDENCE, store_url, str(n), str(PER_PROCESS)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    person_conflicts = walk_lifecycle(store, opened.id)
    logs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs

    final = store.ticket(opened.id)
    assert final is not None
    appended = {BASE_US + 1000 * (n + 1) + i for n in range(2) for i in range(PER_PROCESS)}
    expected = {BASE_US} | appended
    assert sorted(e.at for e in final.evidence) == sorted(
        alert_time(first_alert().model_copy(update={"at_us": us})) for us in expected
    )
    states = [c.state for c in final.history]
    assert states[-len(STEPS) :] == [
        TicketState.ACCEPTED,
        TicketState.ON_SITE,
        TicketState.WAITING_FOR_CUSTOMER,
        TicketState.ON_SITE,
        TicketState.ACCEPTED,
        TicketState.ON_SITE,
    ]
    # One write per change: the opening, its dispatch, each evidence and each step.
    assert final.version == 2 + 2 * PER_PROCESS + len(STEPS)
    assert len(store.tickets()) == 1
    entries = store.audit_log()
    assert sum(e.action == "evidence_added" for e in entries) == 2 * PER_PROCESS
    assert verify(entries).ok
    retried = sum(log.count("concurrent ticket change") for log in logs)
    held = sum(log.count("held:") for log in logs)
    print(f"races retried by workers {retried}, 409s to the person {person_conflicts}, held {held}")
    store.close()
