"""The knowledge base through the desk and the API: suggested on opening, searchable, kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from contract import AlertEvent, AlertTransition, Severity
from service import desk
from service.api import Principal, build_app
from service.knowledge import Fix, KnowledgeEntry
from service.model import Tier
from service.sla import SlaConfig
from service.store import SqliteStore
from tests.service.factories import T0, device, engineer, site

FAN = KnowledgeEntry(
    model="EX-100",
    code="probe",
    title="Probe connector",
    causes=("bent pin",),
    fixes=(Fix(text="replace the connector", parts=("CON-7",)),),
)
ANY = KnowledgeEntry(model="any", code="probe", title="Any probe fault")


def _store() -> SqliteStore:
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1"))
    store.put_device(device("d2", site_id="s2"))
    store.put_engineer(engineer("e1"))
    store.put_knowledge(FAN)
    store.put_knowledge(ANY)
    return store


def test_an_opened_ticket_gets_its_suggestions_audited() -> None:
    store = _store()
    alert = AlertEvent(
        device_id="d1",
        rule_id="probe",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=int(T0.timestamp() * 1e6),
    )
    made, _ = desk.intake_alert(store, alert, T0, SlaConfig())
    assert made is not None
    assert desk.suggestions(store, made) == [FAN, ANY]  # the model's own entry first
    suggested = [e for e in store.audit_log() if e.action == "suggested"]
    assert [e.data["entries"] for e in suggested] == [["EX-100/probe", "any/probe"]]
    manual = desk.open_ticket(store, "d1", Tier.GENERAL, "noisy", "admin:-", "m1", T0)
    assert desk.suggestions(store, manual) == []  # no rule id, no fault yet
    store.close()


ADM = "in-memory-admin-token-0123456789abcdef"
ENG = "in-memory-engineer-e1-token-0123456789ab"
H2 = "in-memory-hospital-s2-token-0123456789ab"
PAT = "in-memory-patient-p1-token-0123456789abc"


@pytest.fixture
async def api() -> AsyncIterator[tuple[SqliteStore, httpx.AsyncClient]]:
    store = _store()
    tokens = {
        ADM: {"role": "admin"},
        ENG: {"role": "engineer", "subject": "e1"},
        H2: {"role": "hospital", "subject": "s2"},
        PAT: {"role": "patient", "subject": "p1"},
    }
    app = build_app(store, {t: Principal.model_validate(p) for t, p in tokens.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield store, client
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admins_keep_knowledge_and_staff_search_it(
    api: tuple[SqliteStore, httpx.AsyncClient],
) -> None:
    store, client = api
    body = {
        "title": "Fan noise",
        "causes": ["worn bearing"],
        "fixes": [{"text": "replace the fan", "parts": ["FAN-12"]}],
    }
    put = await client.put("/knowledge/EX-100/fan", json=body, headers=_as(ADM))
    assert put.status_code == 204, put.text
    assert store.audit_log()[-1].action == "knowledge_put"
    found = await client.get("/knowledge", params={"q": "BEARING"}, headers=_as(ENG))
    assert [e["code"] for e in found.json()] == ["fan"]
    first = await client.get("/knowledge", params={"limit": 1}, headers=_as(H2))
    assert first.status_code == 200 and "X-Next-Cursor" in first.headers
    rest = await client.get(
        "/knowledge", params={"cursor": first.headers["X-Next-Cursor"]}, headers=_as(H2)
    )
    assert [e["code"] for e in first.json() + rest.json()] == ["fan", "probe", "probe"]


async def test_suggestions_of_a_ticket_follow_its_scope(
    api: tuple[SqliteStore, httpx.AsyncClient],
) -> None:
    store, client = api
    made = await client.post("/tickets", json={"device_id": "d1"}, headers=_as(ADM))
    ticket_id = made.json()["id"]
    desk_ticket = store.ticket(ticket_id)
    assert desk_ticket is not None
    answer = await client.get(f"/tickets/{ticket_id}/suggestions", headers=_as(ENG))
    assert answer.status_code == 200 and answer.json() == []
    other = await client.get(f"/tickets/{ticket_id}/suggestions", headers=_as(H2))
    assert other.status_code == 404
    patient = await client.get(f"/tickets/{ticket_id}/suggestions", headers=_as(PAT))
    assert patient.status_code == 403


@pytest.mark.parametrize(
    ("token", "path", "body", "code", "message"),
    [
        (ENG, "/knowledge/EX-100/fan", {"title": "x"}, 403, "may not use this"),
        (ADM, "/knowledge/EX-100/fan", {}, 422, "Field required"),
        (ADM, "/knowledge/EX-100/fan", {"title": " "}, 422, "must not be empty"),
        (ADM, "/knowledge/EX-100/fan", {"title": "x", "extra": 1}, 422, "Extra inputs"),
        (ADM, "/knowledge/EX-100/fan", {"title": "a\nb"}, 422, "control character"),
        (ADM, "/knowledge/EX-100/fan", {"title": "x", "causes": ["c"] * 21}, 422, "at most 20"),
        (
            ADM,
            "/knowledge/EX-100/fan",
            {"title": "x", "fixes": [{"text": "t", "parts": ["bad part!"]}]},
            422,
            "pattern",
        ),
        (ADM, "/knowledge/EX%20100/fan", {"title": "x"}, 422, "pattern"),
    ],
)
async def test_bad_knowledge_puts(
    api: tuple[SqliteStore, httpx.AsyncClient],
    token: str,
    path: str,
    body: dict[str, object],
    code: int,
    message: str,
) -> None:
    _, client = api
    answer = await client.put(path, json=body, headers=_as(token))
    assert answer.status_code == code and message in answer.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": ""}, "at least 1 character"),
        ({"q": "x" * 101}, "at most 100 characters"),
        ({"q": "tab\there"}, "control character"),
        ({"model": "a b"}, "pattern"),
        ({"cursor": "bm9wZQ"}, "invalid cursor"),
    ],
)
async def test_bad_knowledge_searches(
    api: tuple[SqliteStore, httpx.AsyncClient], params: dict[str, str], message: str
) -> None:
    _, client = api
    answer = await client.get("/knowledge", params=params, headers=_as(ADM))
    assert answer.status_code == 422 and message in answer.text
