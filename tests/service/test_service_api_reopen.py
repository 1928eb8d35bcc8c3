"""POST /tickets/{id}/reopen and the resolve that frees an engineer, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.api import Principal, build_app
from service.model import TicketState
from service.store import SqliteStore
from tests.service.factories import device, engineer, site

ADM = "in-memory-admin-token-0123456789abcdef"
H1 = "in-memory-hospital-s1-token-0123456789ab"
H2 = "in-memory-hospital-s2-token-0123456789ab"
ENG = "in-memory-engineer-e1-token-0123456789ab"
TOKENS = {
    ADM: {"role": "admin"},
    H1: {"role": "hospital", "subject": "s1"},
    H2: {"role": "hospital", "subject": "s2"},
    ENG: {"role": "engineer", "subject": "e1"},
}


@pytest.fixture
async def api() -> AsyncIterator[tuple[SqliteStore, httpx.AsyncClient]]:
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1", site_id="s1"))
    store.put_device(device("d2", site_id="s1"))
    store.put_engineer(engineer("e1", capacity=1))
    app = build_app(store, {t: Principal.model_validate(p) for t, p in TOKENS.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield store, client
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _resolved(client: httpx.AsyncClient, device_id: str = "d1") -> str:
    made = await client.post("/tickets", json={"device_id": device_id}, headers=_as(H1))
    ticket_id = str(made.json()["id"])
    for event in ({"event": "accept"}, {"event": "arrive"}, {"event": "resolve", "fault": "x"}):
        answer = await client.post(f"/tickets/{ticket_id}/events", json=event, headers=_as(ENG))
        assert answer.status_code == 200, answer.text
    return ticket_id


async def test_a_hospital_reopens_its_resolved_ticket(
    api: tuple[SqliteStore, httpx.AsyncClient],
) -> None:
    store, client = api
    ticket_id = await _resolved(client)
    answer = await client.post(
        f"/tickets/{ticket_id}/reopen", json={"reason": "leaks again"}, headers=_as(H1)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "dispatched" and body["assignee"] == "e1"
    assert body["history"][-2]["note"] == "reopened: leaks again"
    assert [e.action for e in store.audit_log()][-2:] == ["reopen", "dispatched"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Field required"),
        ({"reason": ""}, "reason must say why"),
        ({"reason": "   "}, "reason must say why"),
        ({"reason": "x" * 4001}, "at most 4000 characters"),
        ({"reason": "ok", "extra": 1}, "Extra inputs are not permitted"),
        ({"reason": "bell\x07"}, "control character"),
    ],
)
async def test_bad_reopen_bodies_are_422(
    api: tuple[SqliteStore, httpx.AsyncClient], body: dict[str, object], message: str
) -> None:
    _, client = api
    ticket_id = await _resolved(client)
    answer = await client.post(f"/tickets/{ticket_id}/reopen", json=body, headers=_as(H1))
    assert answer.status_code == 422
    assert message in answer.text


async def test_reopen_refusals(api: tuple[SqliteStore, httpx.AsyncClient]) -> None:
    _, client = api
    ticket_id = await _resolved(client)
    reason = {"reason": "again"}
    assert (await client.post(f"/tickets/{ticket_id}/reopen", json=reason)).status_code == 401
    engineer = await client.post(f"/tickets/{ticket_id}/reopen", json=reason, headers=_as(ENG))
    assert engineer.status_code == 403
    other = await client.post(f"/tickets/{ticket_id}/reopen", json=reason, headers=_as(H2))
    assert other.status_code == 404 and other.json() == {"detail": "not found"}
    missing = await client.post("/tickets/nope/reopen", json=reason, headers=_as(ADM))
    assert missing.status_code == 404
    assert (
        await client.post(f"/tickets/{ticket_id}/reopen", json=reason, headers=_as(ADM))
    ).status_code == 200
    again = await client.post(f"/tickets/{ticket_id}/reopen", json=reason, headers=_as(ADM))
    assert again.status_code == 409 and "Reopen not allowed in state dispatched" in again.text


async def test_a_resolve_through_the_api_dispatches_a_waiting_ticket(
    api: tuple[SqliteStore, httpx.AsyncClient],
) -> None:
    store, client = api
    first = await client.post("/tickets", json={"device_id": "d1"}, headers=_as(H1))
    waiting = await client.post("/tickets", json={"device_id": "d2"}, headers=_as(H1))
    assert first.json()["assignee"] == "e1" and waiting.json()["state"] == "open"
    assert "0 with spare capacity" in waiting.json()["dispatch_reason"]
    for event in ({"event": "accept"}, {"event": "arrive"}, {"event": "resolve", "fault": "x"}):
        url = f"/tickets/{first.json()['id']}/events"
        assert (await client.post(url, json=event, headers=_as(ENG))).status_code == 200
    now = store.ticket(waiting.json()["id"])
    assert now is not None and now.state is TicketState.DISPATCHED and now.assignee == "e1"
    told = [i for i in store.notifications() if i.event == "ticket.dispatched"]
    assert {(i.role, i.subject) for i in told} >= {("engineer", "e1"), ("service", "team")}
