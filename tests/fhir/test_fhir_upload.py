"""The uploader against a real HTTP FHIR server: outages, lost answers, refusals, OAuth2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contract import Batch, Reading
from infra.telemetry.sqlite import SQLiteStore
from service.fhir import codes
from service.fhir.auth import ClientCredentials, StaticToken
from service.fhir.ids import reading_identifier
from service.fhir.mapping import reading_of
from service.fhir.outbox import FhirOutbox
from service.fhir.uploader import Uploader, UploadSettings
from service.store import SqliteStore
from tests.fhir.fhir_server import CLIENT_ID, CLIENT_SECRET, FhirServer
from tests.fhir.world import NOW, STEP_US, seed_readings, seed_store
from tests.servers import starts_server
from tests.waiting import wait_until


class Clock:
    """Wall time the test moves: backoff delays pass without sleeping."""

    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
@starts_server
def server() -> Iterator[FhirServer]:
    running = FhirServer()
    running.start()
    yield running
    running.stop()


Rig = tuple[Uploader, SqliteStore, SQLiteStore, list[Reading], Clock]


@pytest.fixture
def rig(tmp_path: Path, server: FhirServer) -> Iterator[Rig]:
    store = SqliteStore(tmp_path / "service.db")
    seed_store(store)
    readings = SQLiteStore(str(tmp_path / "readings.db"))
    stored = seed_readings(readings, [d for d in store.devices() if d.site_id == "s1"])
    outbox = FhirOutbox(tmp_path / "fhir-outbox.db")
    clock = Clock()
    settings = UploadSettings(
        base_url=server.base_url,
        gateway_id="gw-home-1",
        software="0.1.0",
        site_ids=frozenset({"s1"}),
        bundle_size=25,
        backoff_s=1.0,
    )
    with httpx.Client(timeout=5.0) as client:
        auth = ClientCredentials(
            server.token_url, CLIENT_ID, CLIENT_SECRET, "system/*.write", client=client
        )
        yield Uploader(settings, readings, store, outbox, auth, client, clock=clock), store, \
            readings, stored, clock  # fmt: skip
    outbox.close()
    readings.close()
    store.close()


def drain(uploader: Uploader, clock: Clock, what: str) -> None:
    """Pass after pass (moving the clock past every backoff) until nothing is pending."""

    def drained() -> bool:
        clock.now += 600
        uploader.pass_once()
        return uploader.outbox.counts()["pending"] == 0

    wait_until(drained, timeout=120, what=what)


def observations_on(server: FhirServer) -> dict[str, int]:
    """How many times the server created each Observation, by reading identifier."""
    prefix = f"Observation|{codes.PHD_OBSERVATION_ID}|"
    return {k[len(prefix) :]: n for k, n in server.store.created.items() if k.startswith(prefix)}


def test_every_observation_arrives_exactly_once_across_an_outage(
    rig: Rig, server: FhirServer
) -> None:
    uploader, _, readings, stored, clock = rig
    first = uploader.pass_once(max_bundles=3)
    assert first.sent == 75 and first.retried == 0
    server.store.commit_then_fail = 2  # two bundles stored, their answers lost: sent again
    uploader.send_due(max_bundles=2)
    server.stop()
    held = uploader.pass_once()
    assert held.retried > 0 and held.sent == 0
    # Readings keep arriving while the server is down; none is lost.
    later = [
        Reading("k:1", "battery", 50.0, "%", stored[-1].ts_us + (i + 1) * STEP_US, 1000 + i)
        for i in range(40)
    ]
    readings.store_batches([Batch("gw-home-1", 99, tuple(later))])
    clock.now += 1
    assert uploader.pass_once().retried > 0
    server.start()
    drain(uploader, clock, "outbox drained after the server came back")
    wanted = {reading_identifier(r) for r in [*stored, *later]}
    created = observations_on(server)
    assert set(created) == wanted
    assert set(created.values()) == {1}, "an Observation was created twice"
    on_server = server.store.of_type("Observation")
    assert {reading_identifier(reading_of(o)) for o in on_server} == wanted
    patients = server.store.of_type("Patient")
    devices = server.store.of_type("Device")
    assert len(patients) == 1 and len(devices) == 4  # k:1, k3, us-1 and the PHG
    patient_ref = f"Patient/{patients[0]['id']}"
    k1 = [o for o in on_server if reading_of(o).device_id == "k:1"]
    assert {o["subject"]["reference"] for o in k1} == {patient_ref}
    assert uploader.outbox.counts() == {"pending": 0, "done": len(wanted), "failed": 0}


def test_a_refused_observation_is_isolated_and_kept_with_the_reason(
    rig: Rig, server: FhirServer
) -> None:
    uploader, _, _, stored, clock = rig
    server.store.refuse_codes = {"67996"}  # MDC_ATTR_VAL_BATT_CHARGE: battery readings
    drain(uploader, clock, "outbox settled")
    batteries = {reading_identifier(r) for r in stored if r.metric == "battery"}
    counts = uploader.outbox.counts()
    assert counts["failed"] == len(batteries) and counts["pending"] == 0
    assert {k for k, _ in uploader.outbox.failures(1000)} == batteries
    assert all("HTTP 422" in reason for _, reason in uploader.outbox.failures(5))
    assert set(observations_on(server)) == {reading_identifier(r) for r in stored} - batteries


def test_a_static_token_the_server_refuses_holds_everything(rig: Rig, server: FhirServer) -> None:
    uploader, _, _, _, _ = rig
    uploader.auth = StaticToken("not-a-token-the-server-issued")
    report = uploader.pass_once()
    assert report.sent == 0 and report.retried > 0 and "HTTP 401" in report.errors[0]
    assert uploader.outbox.counts()["failed"] == 0


def test_a_second_pass_enqueues_nothing_new(rig: Rig) -> None:
    uploader, _, _, stored, _ = rig
    assert uploader.enqueue() == len(stored)
    assert uploader.enqueue() == 0
