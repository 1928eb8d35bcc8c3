"""The REST API probed as an attacker would: body sizes, field sizes, id oracles, floods, hosts.

Memory matters only in a real server, so the body-limit probes run a real uvicorn process and
read its resident set from /proc; everything else runs in-process with TestClient, which
re-raises any server error, so "never a 5xx" is checked on every request.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contract import DeviceKind
from service.api import ApiGuards, ApiSettings, Principal, build_app, create_app
from service.api.body_limit import BodyLimit
from service.api.events import EVENT_ROLES
from service.api.requests import EventName
from service.model import Patient
from service.store import SqliteStore
from service.tokens import TokenRegistry
from tests.servers import starts_server
from tests.service.factories import device, engineer, site
from tests.service.live import LiveApi, api_env, mint_tokens, uvicorn_api

MiB = 1024 * 1024
ADM = "probe-admin-token-0123456789abcdef0123"
ENG = "probe-engineer-e1-token-0123456789abcd"
H1 = "probe-hospital-s1-token-0123456789abcd"
H2 = "probe-hospital-s2-token-0123456789abcd"
PAT = "probe-patient-p1-token-0123456789abcde"
PRINCIPALS = {
    ADM: Principal.model_validate({"role": "admin"}),
    ENG: Principal.model_validate({"role": "engineer", "subject": "e1"}),
    H1: Principal.model_validate({"role": "hospital", "subject": "s1"}),
    H2: Principal.model_validate({"role": "hospital", "subject": "s2"}),
    PAT: Principal.model_validate({"role": "patient", "subject": "p-1"}),
}
NOT_FOUND = {"detail": "not found"}


def seed(store: SqliteStore) -> SqliteStore:
    """Two hospitals, their devices, a patient's kit and an engineer who can fix anything."""
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    for device_id, site_id in (("d1", "s1"), ("d3", "s1"), ("d4", "s1"), ("d2", "s2")):
        store.put_device(device(device_id, site_id=site_id))
    kit = device("k1", DeviceKind.PATCH, site_id="s1").model_copy(update={"patient": "p-1"})
    store.put_device(kit)
    store.put_patient(Patient(id="p-1", site_id="s1", kit=("k1",)))
    store.put_engineer(engineer("e1", skills=frozenset(DeviceKind), capacity=50))
    return store


def app_with(guards: ApiGuards | None = None) -> tuple[FastAPI, SqliteStore]:
    store = seed(SqliteStore())
    return build_app(store, PRINCIPALS, guards=guards), store


@pytest.fixture
def api() -> Iterator[tuple[TestClient, SqliteStore]]:
    app, store = app_with()
    with TestClient(app) as client:
        yield client, store
    store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- request size: a real uvicorn process, its memory read from /proc ---------------------


@pytest.fixture(scope="module")
@starts_server
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("probe")
    seed(SqliteStore(folder / "service.db")).close()
    tokens = mint_tokens(folder / "tokens.json", {"adm": {"role": "admin"}})
    env = api_env(f"sqlite:///{folder / 'service.db'}", folder / "tokens.json")
    with uvicorn_api(env, tokens) as running:
        yield running


def rss_bytes(pid: int) -> int:
    """The resident set of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def raw_request(api: LiveApi, head: bytes, body_chunks: Iterator[bytes] | None = None) -> bytes:
    """Send ``head`` then the chunks while reading the answer; stop sending once refused."""
    host, port = api.base.removeprefix("http://").split(":")
    answer = bytearray()
    with socket.create_connection((host, int(port)), timeout=30) as sock:

        def read() -> None:
            try:
                while data := sock.recv(65536):
                    answer.extend(data)
            except OSError:  # reset after the server refused and closed
                pass

        reader = threading.Thread(target=read)
        reader.start()
        try:
            sock.sendall(head)
            for chunk in body_chunks or ():
                sock.sendall(chunk)
        except OSError:  # the server closed the connection on us: what a limit should do
            pass
        reader.join(timeout=30)
        assert not reader.is_alive()
    return bytes(answer)


def chunked(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    """A chunked transfer-encoded body of ``total`` bytes."""
    piece = b"[" + b"1," * (size // 2 - 1) + b"1"
    for _ in range(total // len(piece)):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def warm_up(api: LiveApi) -> int:
    """A few requests (so lazy imports and caches are in place); the RSS after them."""
    with httpx.Client(base_url=api.base) as client:
        for _ in range(3):
            client.get("/health")
            client.post("/tickets", json={"device_id": "d1"})
    return rss_bytes(api.pid)


def test_a_50_mb_chunked_body_without_a_token_is_refused_and_memory_stays_low(
    live: LiveApi,
) -> None:
    before = warm_up(live)
    head = (
        b"POST /tickets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer = raw_request(live, head, chunked(50 * MiB))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request body larger than 1048576 bytes" in answer
    grown = rss_bytes(live.pid) - before
    assert grown < 16 * MiB, f"server grew by {grown / MiB:.1f} MiB"
    assert httpx.get(f"{live.base}/health").status_code == 200


def test_a_declared_300_mb_body_is_refused_before_a_byte_of_it_is_read(live: LiveApi) -> None:
    before = warm_up(live)
    head = (
        b"PUT /sites/s9 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 314572800\r\n\r\n"
    )
    answer = raw_request(live, head)  # no body sent at all: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert rss_bytes(live.pid) - before < 16 * MiB


def test_the_body_limit_comes_before_authentication_and_parsing(
    api: tuple[TestClient, SqliteStore],
) -> None:
    client, _ = api
    big = b'{"device_id": "d1", "title": "' + b"x" * (2 * MiB) + b'"}'
    for headers in ({}, auth("not-a-token"), auth(H1)):
        answer = client.post("/tickets", content=big, headers=headers)
        assert answer.status_code == 413, answer.text
    # A chunked body (no Content-Length) is counted as it arrives.
    answer = client.post("/tickets", content=iter([b"x" * MiB, b"x" * MiB]))
    assert answer.status_code == 413


def test_a_route_may_get_its_own_body_limit() -> None:
    limit = BodyLimit(app=None, max_bytes=MiB, per_prefix={"/tickets": 4096, "/tickets/x": 10})  # type: ignore[arg-type]
    assert (limit.limit_for("/tickets"), limit.limit_for("/tickets/x/events")) == (4096, 10)
    assert limit.limit_for("/sites/s1") == MiB
    app, store = app_with(ApiGuards(body_limits={"/tickets": 2048}))
    with TestClient(app) as client:
        long_title = {"device_id": "d1", "title": "x" * 190, "padding": "y" * 3000}
        assert client.post("/tickets", json=long_title, headers=auth(H1)).status_code == 413
        site_body = {"id": "s9", "hospital": "h" * 200, "region": "r" * 128}
        assert client.put("/sites/s9", json=site_body, headers=auth(ADM)).status_code == 204
    store.close()


# --- field sizes and characters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"device_id": "d1", "title": "x" * 201}, "at most 200"),
        ({"device_id": "d1", "title": "a\x07b"}, "control character U+0007"),
        ({"device_id": "d1", "title": "two\nlines"}, "control character U+000A"),
        ({"device_id": "d1", "title": "nul\x00"}, "NUL"),
        ({"device_id": "d" * 129}, "pattern"),
        ({"device_id": "d1", "tier": "mega"}, "urgent"),
        ({"device_id": "d1", "assignee": "e1"}, "Extra inputs"),
        ({"device_id": 5}, "string"),
        ([], "dictionary"),
    ],
)
def test_new_ticket_fields_are_bounded(
    api: tuple[TestClient, SqliteStore], body: Any, reason: str
) -> None:
    client, store = api
    answer = client.post("/tickets", json=body, headers=auth(H1))
    assert answer.status_code == 422 and reason in answer.text, answer.text
    assert store.tickets() == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"device_id": "d1", "title": "\\ud800"}',
        b'{"device_id": "d1", "title": "\\udfff tail"}',
        b'{"device_id": "d1", "title": "\\u0000"}',
        b'{"device_id": "d1", "title": "\xff\xfe"}',
        b"not json at all",
    ],
    ids=["high-surrogate", "low-surrogate", "nul", "not-utf8", "not-json"],
)
def test_lone_surrogates_nul_and_broken_json_are_4xx(
    api: tuple[TestClient, SqliteStore], raw: bytes
) -> None:
    client, store = api
    answer = client.post(
        "/tickets", content=raw, headers={**auth(H1), "Content-Type": "application/json"}
    )
    assert answer.status_code in (400, 422), answer.text
    assert store.tickets() == [] and store.audit_log() == []


def _open(client: TestClient, token: str, device_id: str) -> dict[str, Any]:
    made = client.post(
        "/tickets", json={"device_id": device_id, "title": "broken"}, headers=auth(token)
    )
    assert made.status_code in (200, 201), made.text
    body: dict[str, Any] = made.json()
    return body


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"event": "pause", "note": "n" * 4001}, "at most 4000"),
        ({"event": "pause", "note": "esc\x1b[31m"}, "U+001B"),
        ({"event": "resolve", "fault": "f" * 201}, "at most 200"),
        ({"event": "resolve", "fault": "psu", "parts": ["P"] * 51}, "at most 50"),
        ({"event": "resolve", "fault": "psu", "parts": ["bad part"]}, "pattern"),
        ({"event": "sign_off", "signer": "s" * 201}, "at most 200"),
        ({"event": "sign_off", "report": "r" * 100_001}, "at most 100000"),
        ({"event": "follow_up", "satisfaction": 10**30}, "less than or equal to 5"),
        ({"event": "x" * 33}, "Input should be 'dispatch'"),
        ({"event": "no-such-event"}, "Input should be 'dispatch'"),
        ({"event": "dispatch", "engineer_id": "e 1"}, "pattern"),
        ({"event": "accept", "extra": 1}, "Extra inputs"),
    ],
)
def test_event_fields_are_bounded(
    api: tuple[TestClient, SqliteStore], event: dict[str, Any], reason: str
) -> None:
    client, store = api
    ticket = _open(client, H1, "d1")
    audit_before = len(store.audit_log())
    answer = client.post(f"/tickets/{ticket['id']}/events", json=event, headers=auth(ADM))
    assert answer.status_code == 422 and reason in answer.text, answer.text
    assert len(store.audit_log()) == audit_before


def test_notes_keep_newlines_and_tabs(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    ticket = _open(client, H1, "d1")
    for event in ({"event": "accept"}, {"event": "arrive"}):
        assert client.post(
            f"/tickets/{ticket['id']}/events", json=event, headers=auth(ENG)
        ).is_success
    note = {"event": "pause", "note": "line one\n\tline two"}
    paused = client.post(f"/tickets/{ticket['id']}/events", json=note, headers=auth(ENG))
    assert paused.status_code == 200 and paused.json()["history"][-1]["note"] == note["note"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"hospital": "h" * 201, "region": "north"}, "at most 200"),
        ({"hospital": "", "region": "north"}, "at least 1"),
        ({"hospital": "H", "region": "r" * 129}, "at most 128"),
        ({"hospital": "H\x00", "region": "north"}, "NUL"),
    ],
)
def test_installed_base_bodies_are_bounded(
    api: tuple[TestClient, SqliteStore], body: dict[str, str], reason: str
) -> None:
    client, store = api
    answer = client.put("/sites/s9", json={"id": "s9", **body}, headers=auth(ADM))
    assert answer.status_code == 422 and reason in answer.text, answer.text
    assert store.site("s9") is None


def _device_body(**changes: Any) -> dict[str, Any]:
    body = json.loads(device("d9", site_id="s1").model_dump_json())
    return {**body, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"installed_on": "0001-01-01"},
        {"installed_on": "9999-12-31"},
        {"warranty_end": "9999-12-31"},
        {"last_inspection": "1969-12-31"},
        {"serial": "s" * 129},
        {"location": {"ward": "w" * 129}},
        {"location": {"ward": "W1", "bed": "b" * 129}},
        {"location": {"ward": "W1", "bed": "3\x07"}},
        {"location": {"ward": "W1", "bed": 3}},
        {"patient": "p 1"},
    ],
)
def test_device_bodies_are_bounded(
    api: tuple[TestClient, SqliteStore], changes: dict[str, Any]
) -> None:
    client, store = api
    answer = client.put("/devices/d9", json=_device_body(**changes), headers=auth(ADM))
    assert answer.status_code == 422, answer.text
    assert store.device("d9") is None


def test_engineer_and_patient_bodies_are_bounded(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    engineer_body = {"id": "e9", "name": "n", "region": "north", "capacity": 10**30}
    assert client.put("/engineers/e9", json=engineer_body, headers=auth(ADM)).status_code == 422
    kit = {"id": "p-9", "site_id": "s1", "kit": [f"k{i}" for i in range(101)]}
    assert client.put("/patients/p-9", json=kit, headers=auth(ADM)).status_code == 422


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/devices/k1/readings", {"until": "0001-01-01T00:00:00Z"}),
        ("/devices/k1/readings", {"until": "9999-12-31T23:59:59Z"}),
        ("/devices/k1/readings", {"since": "9999-12-31T23:59:59-23:59"}),
        ("/devices/k1/readings", {"since": "0001-01-01T00:00:00+23:59"}),
        ("/reports/s1", {"day": "9999-12-31"}),
        ("/reports/s1", {"day": "0001-01-01"}),
    ],
)
def test_out_of_range_dates_are_a_clear_422(
    api: tuple[TestClient, SqliteStore], route: str, params: dict[str, str]
) -> None:
    client, _ = api
    answer = client.get(route, params=params, headers=auth(ADM))
    assert answer.status_code == 422, answer.text
    assert "must lie between 1970-01-01 and 2999-12-31" in answer.text


def test_extreme_but_allowed_dates_still_give_kpis_and_reports(
    api: tuple[TestClient, SqliteStore],
) -> None:
    client, _ = api
    for device_id, installed, warranty in (
        ("d8", "1970-01-01", "2999-12-31"),
        ("d9", "2999-12-31", "2999-12-31"),
    ):
        body = _device_body(id=device_id, installed_on=installed, warranty_end=warranty)
        assert client.put(f"/devices/{device_id}", json=body, headers=auth(ADM)).status_code == 204
        _open(client, H1, device_id)
    assert client.get("/kpis", headers=auth(H1)).status_code == 200
    for day in ("1970-01-01", "2999-12-31"):
        report = client.get("/reports/s1", params={"day": day}, headers=auth(H1))
        assert report.status_code == 200


# --- one 404 for missing and not yours ------------------------------------------------------


def _other_site_ticket(client: TestClient) -> str:
    return str(_open(client, H2, "d2")["id"])


def test_missing_and_not_yours_get_the_same_404_everywhere(
    api: tuple[TestClient, SqliteStore],
) -> None:
    client, _ = api
    theirs = _other_site_ticket(client)
    probes: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("GET", "/devices/{}", "d2", None),
        ("GET", "/devices/{}/file", "d2", None),
        ("GET", "/devices/{}/readings", "d2", None),
        ("GET", "/devices/{}/alerts", "d2", None),
        ("GET", "/tickets/{}", theirs, None),
        ("GET", "/tickets/{}/transitions", theirs, None),
        ("GET", "/tickets/{}/sla", theirs, None),
        ("POST", "/tickets/{}/events", theirs, {"event": "sign_off", "signer": "x"}),
        ("GET", "/reports/{}", "s2", None),
    ]
    for method, route, existing, body in probes:
        answers = [
            client.request(method, route.format(x), json=body, headers=auth(H1))
            for x in (existing, "no-such-id")
        ]
        assert [a.status_code for a in answers] == [404, 404], route
        assert answers[0].json() == answers[1].json() == NOT_FOUND, route
    for device_id in ("d2", "no-such-id"):
        opened = client.post("/tickets", json={"device_id": device_id}, headers=auth(PAT))
        assert (opened.status_code, opened.json()) == (404, NOT_FOUND)
    assert client.get("/no/such/route", headers=auth(H1)).json() == NOT_FOUND
    assert client.get("/tickets", params={"device_id": "d2"}, headers=auth(H1)).json() == []


def test_ticket_ids_are_random_not_derivable(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    ids = [_open(client, token, device_id)["id"] for token, device_id in ((H1, "d1"), (H1, "d3"))]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 2 and ids[0][:8] != ids[1][:8]


# --- what a patient sees --------------------------------------------------------------------


STAFF_FIELDS = {"assignee", "dispatch_reason", "previous_assignees", "fault", "resolution"}
STAFF_FIELDS |= {"parts", "signature", "escalated_at", "paused_from"}


def _walk_to_sign_off(client: TestClient) -> str:
    ticket = _open(client, PAT, "k1")
    tid = ticket["id"]
    steps: list[tuple[str, dict[str, Any]]] = [
        (ENG, {"event": "accept"}),
        (ENG, {"event": "arrive"}),
        (ENG, {"event": "pause", "note": "SECRET-NOTE waiting for carer"}),
        (ENG, {"event": "resume"}),
        (ENG, {"event": "resolve", "fault": "SECRET-FAULT", "resolution": "SECRET-FIX"}),
        (PAT, {"event": "sign_off", "signer": "SECRET-SIGNER", "report": "ok"}),
    ]
    for token, event in steps:
        moved = client.post(f"/tickets/{tid}/events", json=event, headers=auth(token))
        assert moved.status_code == 200, moved.text
    return str(tid)


def test_a_patient_sees_no_staff_fields(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    tid = _walk_to_sign_off(client)
    seen = [
        client.get(f"/tickets/{tid}", headers=auth(PAT)),
        client.get("/tickets", headers=auth(PAT)),
        client.get(f"/tickets/{tid}/transitions", headers=auth(PAT)),
        client.get("/devices/k1/file", headers=auth(PAT)),
        client.post("/tickets", json={"device_id": "k1"}, headers=auth(PAT)),
    ]
    for answer in seen:
        assert answer.status_code in (200, 201), answer.text
        for staff in ('"e1"', '"dispatch_reason"', '"assignee"', '"note"', "SECRET"):
            assert staff not in answer.text, (staff, answer.text)
    ticket = seen[0].json()
    assert not STAFF_FIELDS & ticket.keys()
    assert ticket["state"] == "signed_off" and ticket["signed_at"] is not None
    assert "parts" not in seen[3].json()
    # Staff still see everything, hospitals included (they meet the engineer on site).
    for token in (H1, ENG, ADM):
        full = client.get(f"/tickets/{tid}", headers=auth(token)).json()
        assert full["assignee"] == "e1" and full["signature"]["signer"] == "SECRET-SIGNER"
        file = client.get("/devices/k1/file", headers=auth(token)).json()
        assert [t["fault"] for t in file["tickets"] if t["id"] == tid] == ["SECRET-FAULT"]


# --- role rules as docs/service.md states them ----------------------------------------------


@pytest.mark.parametrize(("token", "status"), [(ADM, 201), (H1, 201), (PAT, 201), (ENG, 403)])
def test_only_hospitals_patients_and_admins_open_tickets(
    api: tuple[TestClient, SqliteStore], token: str, status: int
) -> None:
    client, store = api
    answer = client.post("/tickets", json={"device_id": "k1"}, headers=auth(token))
    assert answer.status_code == status, answer.text
    assert len(store.tickets()) == (1 if status == 201 else 0)


def test_every_event_the_schema_names_has_a_role_rule() -> None:
    assert set(EVENT_ROLES) == set(get_args(EventName))


def test_the_role_rule_comes_before_the_body(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    odd = {"device_id": "d" * 500, "title": "x" * 5000, "what": 1}
    assert client.post("/tickets", json=odd, headers=auth(ENG)).status_code == 403
    assert client.put("/sites/s1", json=odd, headers=auth(H1)).status_code == 403


@pytest.mark.parametrize(
    ("token", "event", "status"),
    [
        (H1, {"event": "accept"}, 403),
        (PAT, {"event": "dispatch", "engineer_id": "e1"}, 403),
        (PAT, {"event": "close"}, 403),
        (H1, {"event": "follow_up", "satisfaction": 5}, 403),
        (ENG, {"event": "sign_off", "signer": "me"}, 403),
        (ENG, {"event": "accept"}, 200),
    ],
)
def test_events_follow_the_documented_roles(
    api: tuple[TestClient, SqliteStore], token: str, event: dict[str, Any], status: int
) -> None:
    client, _ = api
    tid = _open(client, PAT, "k1")["id"]
    answer = client.post(f"/tickets/{tid}/events", json=event, headers=auth(token))
    assert answer.status_code == status, answer.text


# --- floods: rate limits and manual-ticket dedupe -------------------------------------------


def test_an_open_manual_ticket_is_returned_not_duplicated(
    api: tuple[TestClient, SqliteStore],
) -> None:
    client, store = api
    first = client.post("/tickets", json={"device_id": "k1"}, headers=auth(PAT))
    assert first.status_code == 201
    for token in (PAT, H1, PAT):
        again = client.post("/tickets", json={"device_id": "k1", "title": "x"}, headers=auth(token))
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(store.tickets()) == 1
    assert [e.action for e in store.audit_log()].count("opened") == 1


def test_requests_per_token_are_limited_with_retry_after() -> None:
    app, store = app_with(ApiGuards(rate_limit="5/minute"))
    with TestClient(app) as client:
        assert all(client.get("/devices", headers=auth(H1)).status_code == 200 for _ in range(5))
        refused = client.get("/devices", headers=auth(H1))
        assert refused.status_code == 429 and "too many requests" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert client.get("/devices", headers=auth(H2)).status_code == 200  # another token
    store.close()


def test_new_manual_tickets_per_token_are_limited() -> None:
    app, store = app_with(ApiGuards(ticket_rate_limit="2/hour"))
    with TestClient(app) as client:
        for device_id in ("d1", "d3"):
            assert _open(client, H1, device_id)
        again = client.post("/tickets", json={"device_id": "d1"}, headers=auth(H1))
        assert again.status_code == 200  # dedupe answers without spending the budget
        refused = client.post("/tickets", json={"device_id": "d4"}, headers=auth(H1))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
        assert len(store.tickets()) == 2
    store.close()


def test_repeated_failed_authentication_is_throttled() -> None:
    app, store = app_with(ApiGuards(auth_failure_limit="3/minute"))
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/devices", headers=auth("x" * 40)).status_code == 401
        refused = client.get("/devices", headers=auth("y" * 40))
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert client.get("/devices").status_code == 401  # no token: nothing to guess with
    store.close()


# --- hosts ------------------------------------------------------------------------------------


def test_untrusted_hosts_are_refused_and_never_echoed(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    for host in ("evil.example", "www.localhost", "localhost.evil.example"):
        answer = client.get("/tickets/", headers={**auth(H1), "Host": host}, follow_redirects=False)
        assert answer.status_code == 400 and "location" not in answer.headers
        assert host not in answer.text
    redirected = client.get(
        "/tickets/",
        headers={**auth(H1), "Host": "localhost:8080", "X-Forwarded-Host": "evil.example"},
        follow_redirects=False,
    )
    assert redirected.status_code == 307
    assert redirected.headers["location"].startswith("http://localhost:8080/tickets")


def test_allowed_hosts_are_configurable_and_must_be_named() -> None:
    guards = ApiGuards(allowed_hosts=["api.hospital.example", "*.vigil.example"])
    app, store = app_with(guards)
    with TestClient(app, base_url="http://api.hospital.example") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "x.vigil.example"}).status_code == 200
        assert client.get("/health", headers={"Host": "localhost"}).status_code == 400
    store.close()
    for bad in (["*"], ["evil*.example"], []):
        with pytest.raises(ValueError, match="host"):
            ApiGuards(allowed_hosts=bad)


# --- tokens -----------------------------------------------------------------------------------


@pytest.fixture
def registry_app(tmp_path: Path) -> Iterator[tuple[TestClient, TokenRegistry, dict[str, str]]]:
    seed(SqliteStore(tmp_path / "service.db")).close()
    path = tmp_path / "tokens.json"
    tokens = mint_tokens(path, {"h1": {"role": "hospital", "subject": "s1"}})
    app = create_app(
        ApiSettings(store_url=f"sqlite:///{tmp_path / 'service.db'}", tokens_file=path)
    )
    with TestClient(app) as client:
        yield client, TokenRegistry(path), tokens


def test_the_api_authenticates_through_the_registry_and_sees_revocations(
    registry_app: tuple[TestClient, TokenRegistry, dict[str, str]],
) -> None:
    client, registry, tokens = registry_app
    token = tokens["h1"]
    assert [d["id"] for d in client.get("/devices", headers=auth(token)).json()] == [
        "d1",
        "d3",
        "d4",
        "k1",
    ]
    registry.revoke(token.split("_")[1])  # as `vigil tokens revoke` would, from outside
    assert client.get("/devices", headers=auth(token)).status_code == 401
    fresh, _ = registry.mint("admin", None)  # minted while the API runs: works at once
    assert client.get("/devices", headers=auth(fresh)).status_code == 200


def test_odd_bearer_tokens_are_a_401(
    registry_app: tuple[TestClient, TokenRegistry, dict[str, str]],
) -> None:
    client, _, tokens = registry_app
    token = tokens["h1"]
    for odd in ("x" * 10_000, token[:-1], token + "A", token.replace("vgl_", "VGL_"), "short"):
        assert client.get("/devices", headers=auth(odd)).status_code == 401


def test_a_damaged_token_file_is_a_503_not_a_500(
    registry_app: tuple[TestClient, TokenRegistry, dict[str, str]],
) -> None:
    client, registry, tokens = registry_app
    registry.path.write_text("{damaged")
    answer = client.get("/devices", headers=auth(tokens["h1"]))
    assert answer.status_code == 503 and "retry later" in answer.json()["detail"]


def test_in_memory_tokens_must_be_long() -> None:
    store = SqliteStore()
    with pytest.raises(ValueError, match="shorter than 32"):
        build_app(store, {"adm": Principal.model_validate({"role": "admin"})})
    store.close()


# --- no 5xx for odd input ---------------------------------------------------------------------


HUGE = str(10**30)


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/tickets", {"limit": "-1"}),
        ("/tickets", {"limit": "0"}),
        ("/tickets", {"limit": HUGE}),
        ("/tickets", {"offset": "-5"}),
        ("/tickets", {"offset": HUGE}),
        ("/tickets", {"limit": "abc"}),
        ("/tickets", {"state": "nope"}),
        ("/tickets", {"device_id": "d1\x00"}),
        ("/tickets", {"device_id": "d" * 10_000}),
        ("/devices", {"limit": HUGE}),
        ("/devices", {"offset": "-1"}),
        ("/devices/k1/readings", {"limit": HUGE}),
        ("/devices/k1/readings", {"limit": "-3"}),
        ("/devices/k1/readings", {"bucket_s": HUGE, "metric": "wound_ph"}),
        ("/devices/k1/readings", {"metric": "m" * 10_000}),
        ("/devices/k1/readings", {"since": "yesterday"}),
        ("/devices/k1/readings", {"since": "2026-01-01T00:00:00"}),
        ("/reports/s1", {"day": "2026-02-30"}),
        ("/devices/" + "d" * 129, {}),
        ("/devices/" + "d" * 60_000 + "/file", {}),
        ("/devices/d1%00", {}),
        ("/tickets/t%00/sla", {}),
        ("/tickets/%ED%A0%80", {}),
        ("/reports/..%2F..%2Fetc%2Fpasswd", {}),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, str) else "",
)
def test_odd_paths_and_queries_are_4xx(
    api: tuple[TestClient, SqliteStore], route: str, params: dict[str, str]
) -> None:
    client, _ = api
    answer = client.get(route, params=params, headers=auth(ADM))
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])


def test_pages_of_tickets_and_devices(api: tuple[TestClient, SqliteStore]) -> None:
    client, _ = api
    for device_id in ("d1", "d3", "d4"):
        _open(client, H1, device_id)
    everything = client.get("/tickets", headers=auth(H1)).json()
    page = client.get("/tickets", params={"limit": 1, "offset": 1}, headers=auth(H1)).json()
    assert len(everything) == 3 and page == everything[1:2]
    devices = client.get("/devices", params={"offset": 3}, headers=auth(H1)).json()
    assert [d["id"] for d in devices] == ["k1"]


@pytest.mark.parametrize("token", [H1, PAT])
def test_other_tenants_ids_all_look_absent(api: tuple[TestClient, SqliteStore], token: str) -> None:
    client, _ = api
    theirs = _other_site_ticket(client)
    for route in (
        "/devices/d2",
        "/devices/d2/file",
        "/devices/d2/alerts",
        "/devices/d2/readings",
        f"/tickets/{theirs}",
        f"/tickets/{theirs}/sla",
        f"/tickets/{theirs}/transitions",
    ):
        answer = client.get(route, headers=auth(token))
        assert (answer.status_code, answer.json()) == (404, NOT_FOUND), route
    assert client.get("/reports/s2", headers=auth(H1)).json() == NOT_FOUND
    assert client.get("/tickets", params={"device_id": "d2"}, headers=auth(token)).json() == []
    assert all(a["device_id"] != "d2" for a in client.get("/alerts", headers=auth(token)).json())
