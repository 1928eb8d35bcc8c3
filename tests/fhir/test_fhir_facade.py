"""The read-only FHIR facade: search parameters, paging, reads, role scoping, hostile inputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from contract import Reading
from service.fhir.ids import fhir_id, observation_id
from service.fhir.mapping import reading_of
from service.fhir.validate import validate
from service.store import SqliteStore
from tests.fhir.world import ADMIN, ENG, H1, H2, P1, T0_US, api, auth

World = tuple[TestClient, SqliteStore, list[Reading]]
K1 = fhir_id("k:1")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with api(tmp_path_factory.mktemp("fhir")) as built:
        yield built


def get(client: TestClient, url: str, token: str = ADMIN) -> Any:
    response = client.get(url, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return response.json()


def walk(client: TestClient, url: str, token: str = ADMIN) -> tuple[list[dict[str, Any]], int]:
    """Every resource of a search, following next links; and how many pages it took."""
    found, pages = [], 0
    while url:
        bundle = get(client, url, token)
        validate(bundle)
        pages += 1
        found += [e["resource"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = urlsplit(nxt[0])._replace(scheme="", netloc="").geturl() if nxt else ""
    return found, pages


def test_metadata_is_a_capability_statement(world: World) -> None:
    client, _, _ = world
    statement = client.get("/fhir/metadata").json()
    validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    kinds = {r["type"] for r in statement["rest"][0]["resource"]}
    assert kinds == {"Observation", "Device", "Patient"}


def test_a_patients_observations_come_back_whole_across_pages(world: World) -> None:
    client, _, stored = world
    found, pages = walk(client, "/fhir/Observation?subject=Patient/p1&_count=37")
    expected = sorted((r for r in stored if r.device_id == "k:1"), key=lambda r: r.ts_us)
    assert pages == -(-len(expected) // 37)
    assert len({o["id"] for o in found}) == len(found) == len(expected)
    assert {reading_of(o) for o in found} == set(expected)
    assert all(o["subject"]["reference"] == "Patient/p1" for o in found)
    times = [o["effectiveDateTime"] for o in found]
    assert times == sorted(times)


def test_code_filters_by_mdc_loinc_or_vigil_code(world: World) -> None:
    client, _, _ = world
    url = "/fhir/Observation?subject=Patient/p1&_count=1000&code="
    skin = walk(client, url + "urn:iso:std:iso:11073:10101|150388")[0]
    assert {reading_of(o).metric for o in skin} == {"skin_temp"}
    surface = walk(client, url + "http://loinc.org|61008-9")[0]
    assert {reading_of(o).metric for o in surface} == {"skin_temp", "wound_temp"}
    either = walk(client, url + "2748-2,battery")[0]
    assert {reading_of(o).metric for o in either} == {"wound_ph", "battery"}
    assert walk(client, url + "http://loinc.org|150388")[0] == []


def test_date_prefixes_bound_the_window(world: World) -> None:
    client, _, _ = world
    lo = "2026-02-25T06:15:00Z"
    hi = "2026-02-25T06:20:00Z"
    assert T0_US == 1_772_000_000_000_000
    url = f"/fhir/Observation?subject=Patient/p1&code=battery&date=ge{lo}&date=lt{hi}"
    found = walk(client, url)[0]
    times = [reading_of(o).ts_us for o in found]
    assert times and all(1_772_000_100_000_000 <= t < 1_772_000_400_000_000 for t in times)
    day = walk(client, "/fhir/Observation?subject=Patient/p1&code=battery&date=2026-02-24")[0]
    assert day == []


def test_equipment_readings_have_the_device_as_subject(world: World) -> None:
    client, _, _ = world
    found = walk(client, "/fhir/Observation?subject=Device/us-1&_count=500", H1)[0]
    assert found and all(o["subject"]["reference"] == "Device/us-1" for o in found)
    assert "category" not in found[0]
    other = client.get("/fhir/Observation?subject=Device/us-1", headers=auth(H2))
    assert other.status_code == 404


def test_device_read_carries_identifiers_and_resolves_hashed_ids(world: World) -> None:
    client, _, _ = world
    device = get(client, f"/fhir/Device/{K1}")
    validate(device)
    assert K1.startswith("x-") and device["id"] == K1
    assert device["identifier"][0]["value"] == "k:1"
    assert device["lotNumber"] == "LOT-A" and device["serialNumber"] == "SN-k1"
    assert device["patient"]["reference"] == "Patient/p1"
    patient = get(client, "/fhir/Patient/p1", P1)
    validate(patient)
    assert patient["meta"]["security"][0]["code"] == "PSEUDED"
    assert "name" not in patient


@pytest.mark.parametrize(
    ("token", "url", "status"),
    [
        (H2, f"/fhir/Device/{K1}", 404),
        (H2, "/fhir/Patient/p1", 404),
        (P1, "/fhir/Patient/p2", 404),
        (P1, "/fhir/Device/k2", 404),
        (H2, "/fhir/Observation?subject=Patient/p1", 404),
        (P1, "/fhir/Observation?subject=Device/us-1", 404),
        (ENG, "/fhir/Patient/p2", 200),
        (H1, "/fhir/Device/us-1", 200),
    ],
)
def test_roles_see_what_the_rest_of_the_api_lets_them(
    world: World, token: str, url: str, status: int
) -> None:
    client, _, _ = world
    response = client.get(url, headers=auth(token))
    assert response.status_code == status
    if status == 404:
        assert response.json()["resourceType"] == "OperationOutcome"


HOSTILE = [
    "/fhir/Observation",
    "/fhir/Observation?subject=p1",
    "/fhir/Observation?subject=Practitioner/x",
    "/fhir/Observation?subject=Patient/p1&subject=Patient/p2",
    "/fhir/Observation?subject=Patient/p1&_count=0",
    "/fhir/Observation?subject=Patient/p1&_count=100000",
    "/fhir/Observation?subject=Patient/p1&_count=-5",
    "/fhir/Observation?subject=Patient/p1&_count=1e3",
    "/fhir/Observation?subject=Patient/p1&date=ne2026-01-01",
    "/fhir/Observation?subject=Patient/p1&date=ge2026-13-45",
    "/fhir/Observation?subject=Patient/p1&date=ge99999-01-01",
    "/fhir/Observation?subject=Patient/p1&date=ge2026-01-01T10:00:00",
    "/fhir/Observation?subject=Patient/p1&date=gegarbage",
    "/fhir/Observation?subject=Patient/p1&date=a&date=b&date=c&date=d&date=e",
    "/fhir/Observation?subject=Patient/p1&code=",
    "/fhir/Observation?subject=Patient/p1&code=" + ",".join(["x"] * 30),
    "/fhir/Observation?subject=Patient/p1&_cursor=!!!!",
    "/fhir/Observation?subject=Patient/p1&_cursor=WzEsMiwzLDRd",
    "/fhir/Observation?subject=Patient/p1&_format=xml",
    "/fhir/Observation?subject=Patient/" + "a" * 500,
    "/fhir/Observation?subject=Patient/%F0%9F%92%A9",
    "/fhir/Observation?subject=Patient/%ED%A0%80",
    "/fhir/Device/" + "x" * 300,
    "/fhir/Device/%2e%2e",
    "/fhir/Device/a%20b",
    "/fhir/Patient/%ED%A0%80",
    "/fhir/Patient/nobody",
    "/fhir/Encounter/1",
    "/fhir/Observation/1/_history",
    "/fhir/",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_inputs_get_an_operation_outcome_never_a_5xx(world: World, url: str) -> None:
    client, _, _ = world
    response = client.get(url, headers=auth(ADMIN))
    assert response.status_code in (400, 404), (response.status_code, response.text)
    outcome = response.json()
    validate(outcome)
    assert outcome["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_are_refused_as_read_only(world: World, method: str) -> None:
    client, _, _ = world
    response = client.request(method, "/fhir/Observation", headers=auth(ADMIN), json={})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_no_token_is_a_401_operation_outcome(world: World) -> None:
    client, _, _ = world
    response = client.get("/fhir/Patient/p1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["issue"][0]["code"] == "login"


def test_observation_ids_are_stable(world: World) -> None:
    client, _, stored = world
    first = walk(client, "/fhir/Observation?subject=Patient/p1&code=battery&_count=5")[0][0]
    reading = reading_of(first)
    assert first["id"] == observation_id(reading) and reading in stored
