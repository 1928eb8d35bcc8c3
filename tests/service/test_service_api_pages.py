"""List routes page by keyset cursor with SQL filters; boards show a console's view in one call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contract import (
    AlertEvent,
    AlertTransition,
    Batch,
    DeviceKind,
    Reading,
    Severity,
    WoundBaseline,
)
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import us_from_datetime
from service import desk
from service.api import Principal, build_app
from service.api.schemas import SiteBoard
from service.lifecycle import Accept
from service.model import Location, Tier
from service.store import SqliteStore
from tests.service.factories import T0, device, engineer, site

ADM = "pages-admin-token-0123456789abcdef0123"
H1 = "pages-hospital-s1-token-0123456789abcd"
PAT = "pages-patient-p1-token-0123456789abcde"
PRINCIPALS = {
    ADM: Principal.model_validate({"role": "admin"}),
    H1: Principal.model_validate({"role": "hospital", "subject": "s1"}),
    PAT: Principal.model_validate({"role": "patient", "subject": "p-1"}),
}
NOW = T0 + timedelta(hours=6)


def seeded() -> tuple[SqliteStore, SQLiteStore]:
    """Two sites; twelve devices at s1 (four patches in ward W1, one a patient's); tickets."""
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_engineer(engineer("e1", skills=frozenset(DeviceKind), capacity=100))
    for n in range(12):
        kind = DeviceKind.PATCH if n < 4 else DeviceKind.ENDOSCOPE
        where = Location(ward="W1", room=str(n), bed="A" if n == 1 else "") if n < 4 else None
        d = device(f"d{n:02d}", kind, site_id="s1").model_copy(update={"location": where})
        store.put_device(d.model_copy(update={"patient": "p-1"}) if n == 0 else d)
    store.put_device(device("x1", site_id="s2"))
    for n, device_id in enumerate(["d00", "d01", "d05", "d06", "d07", "x1"]):
        tier = Tier.URGENT if n % 2 else Tier.GENERAL
        desk.open_ticket(store, device_id, tier, f"fault {n}", "test", f"T{n}", T0 + timedelta(n))
    desk.apply(store, "T2", Accept(), "e1", T0 + timedelta(hours=50))
    readings = SQLiteStore(":memory:")
    readings.migrate()
    base = us_from_datetime(NOW - timedelta(hours=1))
    rows = [
        Reading(f"d{n:02d}", "wound_temp", 30.0 + i, "degC", base + i, i)
        for n in range(4)
        for i in range(3)
    ]
    readings.store_batches([Batch("gw", 1, tuple(rows))])
    events = [
        AlertEvent(
            device_id="d01",
            rule_id="r",
            severity=Severity.WARNING,
            transition=AlertTransition.RAISED,
            at_us=base,
        ),
        AlertEvent(
            device_id="d02",
            rule_id="r",
            severity=Severity.WARNING,
            transition=AlertTransition.RAISED,
            at_us=base,
        ),
        AlertEvent(
            device_id="d02",
            rule_id="r",
            severity=Severity.WARNING,
            transition=AlertTransition.CLEARED,
            at_us=base + 1,
        ),
        AlertEvent(
            device_id="x1",
            rule_id="r",
            severity=Severity.WARNING,
            transition=AlertTransition.RAISED,
            at_us=base,
        ),
    ]
    readings.store_alert_events(events)
    readings.store_baselines(
        [WoundBaseline("d00", "dressing.temp.rise", "wound_temp", 31.5, 32.25, 1)]
    )
    return store, readings


@pytest.fixture
def client() -> Iterator[TestClient]:
    store, readings = seeded()
    app = build_app(store, PRINCIPALS, readings=readings, clock=lambda: NOW)
    with TestClient(app) as test_client:
        yield test_client
    store.close()
    readings.close()


def get(client: TestClient, token: str, route: str, **params: Any) -> Any:
    auth = {"Authorization": f"Bearer {token}"}
    # (httpx would drop a URL's own query for an empty ``params``.)
    answer = (
        client.get(route, params=params, headers=auth)
        if params
        else client.get(route, headers=auth)
    )
    assert answer.status_code == 200, answer.text
    return answer


def walk_pages(client: TestClient, token: str, route: str, **params: Any) -> list[Any]:
    """Every item of a list route, following the Link: rel="next" headers."""
    items: list[Any] = []
    answer = get(client, token, route, **params)
    while True:
        items += answer.json()
        link = answer.headers.get("link")
        if link is None:
            return items
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert match is not None and answer.headers["x-next-cursor"] in link
        answer = get(client, token, match.group(1))


@pytest.mark.parametrize("sort", ["id", "-opened", "updated", "due"])
def test_ticket_pages_follow_next_links(client: TestClient, sort: str) -> None:
    everything = get(client, ADM, "/tickets", sort=sort, limit=1000).json()
    assert "link" not in get(client, ADM, "/tickets", sort=sort).headers
    assert walk_pages(client, ADM, "/tickets", sort=sort, limit=2) == everything
    assert len(everything) == 6  # (due: tickets with a running clock; none is paused)


def test_ticket_filters_are_sql_predicates_within_the_scope(client: TestClient) -> None:
    ids = lambda answer: [t["id"] for t in answer.json()]  # noqa: E731
    assert ids(get(client, ADM, "/tickets", site_id="s2")) == ["T5"]
    assert ids(get(client, H1, "/tickets", site_id="s2")) == []  # not theirs: nothing, no 404
    assert ids(get(client, ADM, "/tickets", state=["accepted"])) == ["T2"]
    assert ids(get(client, ADM, "/tickets", state=["accepted", "dispatched"], tier="urgent")) == [
        "T1",
        "T3",
        "T5",
    ]
    assert ids(get(client, ADM, "/tickets", assignee="e1", limit=2)) == ["T0", "T1"]
    assert ids(get(client, PAT, "/tickets")) == ["T0"]
    since = (T0 + timedelta(days=4)).isoformat()
    assert ids(get(client, ADM, "/tickets", updated_since=since)) == ["T4", "T5"]
    due = (T0 + timedelta(hours=3)).isoformat()
    assert ids(get(client, ADM, "/tickets", due_before=due)) == []
    assert ids(get(client, ADM, "/tickets", offset=4)) == ["T4", "T5"]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not a cursor"},
        {"cursor": "WyJpZCJd"},
        {"cursor": "WyJ1cGRhdGVkIiwxLCJ4Il0"},
        # forged positions beyond 64-bit integers:
        # ["updated", 2**63, "T1"] and ["opened", -2**64, "T1"]
        {"cursor": "WyJ1cGRhdGVkIiw5MjIzMzcyMDM2ODU0Nzc1ODA4LCJUMSJd", "sort": "updated"},
        {"cursor": "WyJvcGVuZWQiLC0xODQ0Njc0NDA3MzcwOTU1MTYxNiwiVDEiXQ", "sort": "opened"},
    ],
)
def test_a_bad_cursor_is_a_422(client: TestClient, params: dict[str, str]) -> None:
    answer = client.get("/tickets", params=params, headers={"Authorization": f"Bearer {ADM}"})
    assert answer.status_code == 422


def test_device_pages_and_alert_pages(client: TestClient) -> None:
    devices = walk_pages(client, H1, "/devices", limit=5)
    assert [d["id"] for d in devices] == [f"d{n:02d}" for n in range(12)]
    ward = get(client, H1, "/devices", ward="W1", kind="patch").json()
    assert [d["id"] for d in ward] == ["d00", "d01", "d02", "d03"]
    assert [a["device_id"] for a in walk_pages(client, ADM, "/alerts", limit=1)] == [
        "d01",
        "d02",
        "x1",
        "d02",
    ]
    assert [a["device_id"] for a in walk_pages(client, H1, "/alerts", limit=1)] == [
        "d01",
        "d02",
        "d02",
    ]
    assert get(client, PAT, "/alerts").json() == []


def test_large_answers_are_compressed(client: TestClient) -> None:
    answer = client.get(
        "/devices", headers={"Authorization": f"Bearer {ADM}", "Accept-Encoding": "gzip"}
    )
    assert answer.headers["content-encoding"] == "gzip" and len(answer.json()) == 13


def test_the_sla_board_shows_open_tickets_with_their_clocks(client: TestClient) -> None:
    board = get(client, ADM, "/board/tickets").json()
    assert [t["id"] for t in board] == ["T0", "T1", "T2", "T3", "T4", "T5"]
    first = board[0]
    # General tier, opened 6 h ago: the 4 h respond clock ran out, the 48 h resolve one runs.
    assert first["respond"]["breached"] and first["breached"]
    assert not first["resolve"]["breached"] and first["resolve"]["remaining_s"] == 42 * 3600
    assert board[2]["respond"]["stopped_at"] is not None
    assert [t["id"] for t in get(client, H1, "/board/tickets").json()] == [
        "T0",
        "T1",
        "T2",
        "T3",
        "T4",
    ]
    assert [t["id"] for t in get(client, ADM, "/board/tickets", limit=2).json()] == ["T0", "T1"]
    refused = client.get("/board/tickets", headers={"Authorization": f"Bearer {PAT}"})
    assert refused.status_code == 403


def test_the_ward_board_has_readings_tickets_and_alerts_in_one_call(client: TestClient) -> None:
    answer = get(client, H1, "/board/sites/s1", ward="W1")
    # Built from plain rows, it is exactly what the SiteBoard model would serialise.
    assert (
        SiteBoard.model_validate_json(answer.content).model_dump_json().encode() == answer.content
    )
    board = answer.json()
    assert board["site"]["id"] == "s1"
    rows = {row["device_id"]: row for row in board["devices"]}
    assert sorted(rows) == ["d00", "d01", "d02", "d03"]
    assert rows["d00"]["latest"]["wound_temp"]["value"] == 32.0
    (baseline,) = rows["d00"]["baselines"]
    assert (baseline["rule_id"], baseline["baseline"], baseline["delta"]) == (
        "dressing.temp.rise",
        31.5,
        0.75,
    )
    assert rows["d01"]["baselines"] == []
    assert [t["id"] for t in rows["d01"]["tickets"]] == ["T1"]
    assert [a["rule_id"] for a in rows["d01"]["alerts"]] == ["r"]
    assert rows["d02"]["alerts"] == []  # cleared
    assert (rows["d01"]["room"], rows["d01"]["bed"], rows["d02"]["bed"]) == ("1", "A", "")
    whole = get(client, ADM, "/board/sites/s1", limit=5)
    assert len(whole.json()["devices"]) == 5 and "link" in whole.headers
    other = client.get("/board/sites/s2", headers={"Authorization": f"Bearer {H1}"})
    assert other.status_code == 404


def test_kpis_of_one_site(client: TestClient) -> None:
    network = get(client, ADM, "/kpis").json()
    one = get(client, ADM, "/kpis", site_id="s1").json()
    assert (network["tickets"], one["tickets"]) == (6, 5)
    assert get(client, H1, "/kpis").json() == one
    theirs = client.get(
        "/kpis", params={"site_id": "s2"}, headers={"Authorization": f"Bearer {H1}"}
    )
    assert theirs.status_code == 404
