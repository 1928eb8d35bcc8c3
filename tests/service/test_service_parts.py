"""Spare parts through the desk, the worker and the API: reserve, consume, tell when low."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from contract import AlertEvent, AlertTransition, Severity
from service import desk
from service.api import Principal, build_app
from service.knowledge import Fix, KnowledgeEntry
from service.lifecycle import Accept, Arrive, Resolve
from service.schedules import ScheduleConfig
from service.sla import SlaConfig
from service.store import SqliteStore
from service.ticker import Ticker
from service.worker_settings import WorkerSettings
from tests.service.factories import T0, device, engineer, hours, site

PROBE = KnowledgeEntry(
    model="EX-100",
    code="probe",
    title="Probe connector",
    fixes=(Fix(text="replace the connector and the cable", parts=("CON-7", "CAB-2", "CAB-2")),),
)


def _store() -> SqliteStore:
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1"))
    store.put_device(device("d2"))
    store.put_device(device("d9", site_id="s2"))
    store.put_engineer(engineer("e1"))
    store.put_knowledge(PROBE)
    store.put_stock("north", "CON-7", on_hand=5, low_at=1)
    store.put_stock("north", "CAB-2", on_hand=3, low_at=1)
    return store


def alert(device_id: str) -> AlertEvent:
    return AlertEvent(
        device_id=device_id,
        rule_id="probe",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=int(T0.timestamp() * 1e6),
    )


def test_dispatch_reserves_the_kit_and_resolve_consumes_what_was_used() -> None:
    store = _store()
    made, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())
    assert made is not None and made.assignee == "e1"
    assert [(r.part, r.quantity) for r in store.reservations(made.id)] == [
        ("CAB-2", 2),
        ("CON-7", 1),
    ]
    reserved = [e for e in store.audit_log() if e.action == "parts_reserved"]
    assert reserved[-1].data == {
        "warehouse": "north",
        "reserved": {"CAB-2": 2, "CON-7": 1},
        "short": {},
    }
    # The second ticket finds one cable left: the connector is held, the cables are short.
    other, _ = desk.intake_alert(store, alert("d2"), T0, SlaConfig())
    assert other is not None
    short = [e for e in store.audit_log() if e.action == "parts_reserved"][-1]
    assert short.data["short"] == {"CAB-2": 2} and short.data["reserved"] == {"CON-7": 1}
    for n, event in enumerate([Accept(), Arrive(), Resolve("probe", parts=("CON-7",))]):
        desk.apply(store, made.id, event, "engineer:e1", T0 + hours(1 + n))
    con, cab = store.stock("north", "CON-7"), store.stock("north", "CAB-2")
    assert con is not None and (con.on_hand, con.reserved) == (4, 1)  # the other ticket's
    assert cab is not None and (cab.on_hand, cab.reserved) == (3, 0)  # unused cables back
    assert store.reservations(made.id) == []
    consumed = [e for e in store.audit_log() if e.action == "parts_consumed"]
    assert consumed[-1].data == {"warehouse": "north", "used": {"CON-7": 1}}
    store.close()


async def test_the_worker_tells_the_team_once_per_fall_to_the_low_mark() -> None:
    store = _store()
    ticker = Ticker(WorkerSettings(schedules=ScheduleConfig(inspected_kinds=frozenset())), store)
    await ticker.tick(T0)
    assert [i for i in store.notifications() if i.event == "stock.low"] == []
    made, _ = desk.intake_alert(store, alert("d1"), T0, SlaConfig())  # 1 cable left: low
    assert made is not None
    await ticker.tick(T0 + hours(1))
    await ticker.tick(T0 + hours(2))
    told = [i for i in store.notifications() if i.event == "stock.low" and i.channel == "mqtt"]
    assert [(i.payload["part"], i.payload["available"]) for i in told] == [("CAB-2", 1)]
    store.put_stock("north", "CAB-2", on_hand=10, low_at=1)  # a delivery: no longer low
    store.put_stock("north", "CAB-2", on_hand=2, low_at=1)  # used up again
    await ticker.tick(T0 + hours(3))
    told = [i for i in store.notifications() if i.event == "stock.low" and i.channel == "mqtt"]
    assert len(told) == 2
    store.close()


ADM = "in-memory-admin-token-0123456789abcdef"
ENG = "in-memory-engineer-e1-token-0123456789ab"
H2 = "in-memory-hospital-s2-token-0123456789ab"


@pytest.fixture
async def api() -> AsyncIterator[tuple[SqliteStore, httpx.AsyncClient]]:
    store = _store()
    tokens = {
        ADM: {"role": "admin"},
        ENG: {"role": "engineer", "subject": "e1"},
        H2: {"role": "hospital", "subject": "s2"},
    }
    app = build_app(store, {t: Principal.model_validate(p) for t, p in tokens.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield store, client
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_stock_through_the_api(api: tuple[SqliteStore, httpx.AsyncClient]) -> None:
    store, client = api
    put = await client.put(
        "/stock/north/FAN-12", json={"on_hand": 1, "low_at": 2}, headers=_as(ADM)
    )
    assert put.status_code == 200, put.text
    assert put.json() == {
        "warehouse": "north",
        "part": "FAN-12",
        "on_hand": 1,
        "reserved": 0,
        "low_at": 2,
        "available": 1,
        "low": True,
    }
    assert store.audit_log()[-1].action == "stock_set"
    low = await client.get("/stock", params={"low": "true"}, headers=_as(ENG))
    assert [s["part"] for s in low.json()] == ["FAN-12"]
    first = await client.get("/stock", params={"limit": 2}, headers=_as(ENG))
    rest = await client.get(
        "/stock", params={"cursor": first.headers["X-Next-Cursor"]}, headers=_as(ENG)
    )
    assert [s["part"] for s in first.json() + rest.json()] == ["CAB-2", "CON-7", "FAN-12"]
    made = await client.post("/tickets", json={"device_id": "d1"}, headers=_as(ADM))
    held = await client.get(f"/tickets/{made.json()['id']}/parts", headers=_as(ENG))
    assert held.status_code == 200 and held.json() == []  # a manual ticket has no kit
    hidden = await client.get(f"/tickets/{made.json()['id']}/parts", headers=_as(H2))
    assert hidden.status_code == 404


@pytest.mark.parametrize(
    ("token", "body", "code", "message"),
    [
        (ENG, {"on_hand": 1}, 403, "may not use this"),
        (H2, {"on_hand": 1}, 403, "may not use this"),
        (ADM, {}, 422, "Field required"),
        (ADM, {"on_hand": -1}, 422, "greater than or equal to 0"),
        (ADM, {"on_hand": 10**7}, 422, "less than or equal to 1000000"),
        (ADM, {"on_hand": "many"}, 422, "valid integer"),
        (ADM, {"on_hand": 1, "low_at": -2}, 422, "greater than or equal to 0"),
        (ADM, {"on_hand": 1, "colour": "red"}, 422, "Extra inputs"),
    ],
)
async def test_bad_stock_puts(
    api: tuple[SqliteStore, httpx.AsyncClient],
    token: str,
    body: dict[str, object],
    code: int,
    message: str,
) -> None:
    _, client = api
    answer = await client.put("/stock/north/FAN-12", json=body, headers=_as(token))
    assert answer.status_code == code and message in answer.text


async def test_bad_stock_queries(api: tuple[SqliteStore, httpx.AsyncClient]) -> None:
    _, client = api
    for params in ({"warehouse": "no where"}, {"low": "maybe"}, {"cursor": "bm9wZQ"}):
        answer = await client.get("/stock", params=params, headers=_as(ADM))
        assert answer.status_code == 422, params
    bad_part = await client.put("/stock/north/FAN%2012", json={"on_hand": 1}, headers=_as(ADM))
    assert bad_part.status_code == 422
