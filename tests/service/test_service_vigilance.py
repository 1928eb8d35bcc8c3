"""Suspected patient harm: the flag, and the incident report drafted from it (JSON and HTML)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from contract import DeviceKind, Severity
from service.api import Principal, build_app
from service.lifecycle import Accept, Arrive, Dispatch, Resolve
from service.model import Device, Evidence, Ticket
from service.store import SqliteStore
from service.traceability.model import UdiRecord
from service.vigilance import REPORT_WITHIN, HarmFlag, draft, render_html
from tests.service.factories import T0, device, engineer, hours, site, ticket, walk

ADM = "in-memory-admin-token-0123456789abcdef"
H1 = "in-memory-hospital-s1-token-0123456789ab"
H2 = "in-memory-hospital-s2-token-0123456789ab"
PAT = "in-memory-patient-p1-token-0123456789abc"


def kit() -> tuple[Device, Ticket]:
    d = device("k1", DeviceKind.PATCH).model_copy(
        update={"patient": "pt-1", "model": "VP-1<script>", "lot": "L2025-06"}
    )
    evidence = Evidence(at=T0, severity=Severity.CRITICAL, message="temp 41 C & rising")
    t = ticket(device_id="k1", rule_id="dressing.infection_signs").model_copy(
        update={"evidence": (evidence,)}
    )
    t = walk(
        t,
        (Dispatch("e1", "x"), T0),
        (Accept(), T0),
        (Arrive(), T0 + hours(1)),
        (Resolve("adhesive", "replaced the dressing", ("VP-1",)), T0 + hours(2)),
    )
    return d, t


def test_the_draft_holds_device_udi_site_evidence_and_history() -> None:
    d, t = kit()
    flag = HarmFlag(
        ticket_id=t.id, flagged_at=T0 + hours(3), flagged_by="hospital:s1", description="blister"
    )
    udi = UdiRecord(
        device_id="k1",
        gtin="09506000134352",
        lot="L2025-06",
        serial="SN-k1",
        hri="(01)09506000134352(10)L2025-06(21)SN-k1",
        registered_at=T0,
        expiry=date(2027, 1, 1),
    )
    doc = draft(t, d, site("s1"), flag, udi, T0 + hours(4))
    assert doc.status.startswith("draft") and doc.report_due == T0 + hours(3) + REPORT_WITHIN
    assert doc.incident_date == T0 and doc.patient == "pt-1"
    assert doc.device["lot"] == "L2025-06" and doc.udi is not None
    assert doc.udi["gtin"] == "09506000134352"
    assert doc.evidence == [
        {
            "at": T0.isoformat(),
            "severity": "critical",
            "rule_id": "dressing.infection_signs",
            "message": "temp 41 C & rising",
        }
    ]
    assert [h["state"] for h in doc.history][-1] == "resolved"
    assert doc.fault == "adhesive" and doc.parts == ["VP-1"]
    page = render_html(doc)
    assert "DRAFT: not submitted" in page and "<script" not in page
    assert "VP-1&lt;script&gt;" in page and "temp 41 C &amp; rising" in page
    assert not re.search(r"https?://|src=|href=", page)  # self-contained


@pytest.fixture
async def api() -> AsyncIterator[tuple[SqliteStore, httpx.AsyncClient, str]]:
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    d, t = kit()
    store.put_device(d)
    store.put_engineer(engineer("e1"))
    stored = store.put_ticket(t)
    tokens = {
        ADM: {"role": "admin"},
        H1: {"role": "hospital", "subject": "s1"},
        H2: {"role": "hospital", "subject": "s2"},
        PAT: {"role": "patient", "subject": "pt-1"},
    }
    app = build_app(store, {k: Principal.model_validate(p) for k, p in tokens.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield store, client, stored.id
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_flag_then_draft_through_the_api(
    api: tuple[SqliteStore, httpx.AsyncClient, str],
) -> None:
    store, client, ticket_id = api
    none_yet = await client.get(f"/tickets/{ticket_id}/vigilance", headers=_as(ADM))
    assert none_yet.status_code == 404
    body = {"description": "skin burn under the dressing"}
    made = await client.post(f"/tickets/{ticket_id}/harm", json=body, headers=_as(H1))
    assert made.status_code == 201, made.text
    assert made.json()["flagged_by"] == "hospital:s1"
    assert store.audit_log()[-1].action == "harm_suspected"
    again = await client.post(f"/tickets/{ticket_id}/harm", json=body, headers=_as(ADM))
    assert again.status_code == 409 and "flagged already" in again.text
    doc = await client.get(f"/tickets/{ticket_id}/vigilance", headers=_as(H1))
    assert doc.status_code == 200 and doc.json()["description"] == body["description"]
    html = await client.get(f"/tickets/{ticket_id}/vigilance.html", headers=_as(ADM))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "skin burn under the dressing" in html.text
    listed = await client.get("/vigilance", headers=_as(ADM))
    assert [f["ticket_id"] for f in listed.json()] == [ticket_id]


async def test_vigilance_refusals(api: tuple[SqliteStore, httpx.AsyncClient, str]) -> None:
    _, client, ticket_id = api
    url = f"/tickets/{ticket_id}/harm"
    good = {"description": "blister"}
    assert (await client.post(url, json=good)).status_code == 401
    assert (await client.post(url, json=good, headers=_as(PAT))).status_code == 403
    assert (await client.post(url, json=good, headers=_as(H2))).status_code == 404
    assert (await client.post("/tickets/nope/harm", json=good, headers=_as(ADM))).status_code == 404
    for bad, message in [
        ({}, "Field required"),
        ({"description": "  "}, "must say what harm"),
        ({"description": "x" * 4001}, "at most 4000"),
        ({"description": "a\x00b"}, ""),
        ({"description": "ok", "severity": "high"}, "Extra inputs"),
    ]:
        answer = await client.post(url, json=bad, headers=_as(ADM))
        assert answer.status_code in (400, 422) and message in answer.text, bad
    assert (await client.get("/vigilance", headers=_as(H1))).status_code == 403
    other = await client.get(f"/tickets/{ticket_id}/vigilance.html", headers=_as(H2))
    assert other.status_code == 404
    assert (
        await client.get("/vigilance", params={"cursor": "bm9wZQ"}, headers=_as(ADM))
    ).status_code == 422
