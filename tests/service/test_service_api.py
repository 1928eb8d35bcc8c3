"""REST API against a real uvicorn process: token auth and per-role visibility."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract import DeviceKind
from service.model import Patient
from service.store import SqliteStore
from tests.servers import starts_server
from tests.service.factories import device, engineer, site
from tests.service.live import LiveApi, api_env, client, mint_tokens, uvicorn_api

TOKENS = {
    "adm": {"role": "admin"},
    "eng1": {"role": "engineer", "subject": "e1"},
    "eng2": {"role": "engineer", "subject": "e2"},
    "h1": {"role": "hospital", "subject": "s1"},
    "h2": {"role": "hospital", "subject": "s2"},
    "pat": {"role": "patient", "subject": "p-1"},
}


@pytest.fixture(scope="module")
@starts_server
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    db = tmp_path_factory.mktemp("api") / "service.db"
    store = SqliteStore(db)
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1", site_id="s1"))
    store.put_device(device("d2", site_id="s2"))
    kit = device("k1", DeviceKind.PATCH, site_id="s1").model_copy(update={"patient": "p-1"})
    store.put_device(kit)
    store.put_patient(Patient(id="p-1", site_id="s1", kit=("k1",)))
    store.put_engineer(engineer("e1", skills=frozenset(DeviceKind)))
    store.put_engineer(engineer("e2", region="south"))
    store.close()
    tokens_file = db.parent / "tokens.json"
    tokens = mint_tokens(tokens_file, TOKENS)
    with uvicorn_api(api_env(f"sqlite:///{db}", tokens_file), tokens) as live:
        yield live


@pytest.mark.parametrize("token", [None, "wrong"])
def test_requests_without_a_valid_token_are_refused(api: LiveApi, token: str | None) -> None:
    assert client(api, token).get("/devices").status_code == 401


@pytest.mark.parametrize(
    ("token", "visible"),
    [
        ("adm", ["d1", "d2", "k1"]),
        ("eng2", ["d1", "d2", "k1"]),
        ("h1", ["d1", "k1"]),
        ("h2", ["d2"]),
        ("pat", ["k1"]),
    ],
)
def test_each_role_sees_only_its_devices(api: LiveApi, token: str, visible: list[str]) -> None:
    assert [d["id"] for d in client(api, token).get("/devices").json()] == visible


def test_other_hospitals_devices_look_absent(api: LiveApi) -> None:
    assert client(api, "h1").get("/devices/d2").status_code == 404
    assert client(api, "h1").post("/tickets", json={"device_id": "d2"}).status_code == 404


def test_one_click_repair_through_to_sign_off(api: LiveApi) -> None:
    h1, eng1, eng2 = client(api, "h1"), client(api, "eng1"), client(api, "eng2")
    made = h1.post("/tickets", json={"device_id": "d1", "title": "won't boot"})
    assert made.status_code == 201
    t = made.json()
    assert t["state"] == "dispatched" and t["assignee"] == "e1" and t["kind"] == "manual"
    tid = t["id"]
    assert client(api, "h2").get(f"/tickets/{tid}").status_code == 404
    assert eng2.post(f"/tickets/{tid}/events", json={"event": "accept"}).status_code == 403
    for event in ({"event": "accept"}, {"event": "arrive"}, {"event": "resolve", "fault": "psu"}):
        assert eng1.post(f"/tickets/{tid}/events", json=event).status_code == 200
    again = eng1.post(f"/tickets/{tid}/events", json={"event": "accept"})
    assert again.status_code == 409 and "not allowed" in again.json()["detail"]
    signed = h1.post(
        f"/tickets/{tid}/events", json={"event": "sign_off", "signer": "Nurse A", "report": "ok"}
    )
    assert signed.status_code == 200 and signed.json()["signature"]["signer"] == "Nurse A"
    sla = h1.get(f"/tickets/{tid}/sla").json()
    assert sla["respond"]["stopped_at"] is not None and not sla["breached"]
    assert [x["id"] for x in h1.get("/tickets").json()] == [tid]
    assert client(api, "pat").get("/tickets").json() == []


def test_audit_verification_is_admin_only(api: LiveApi) -> None:
    assert client(api, "h1").get("/audit/verify").status_code == 403
    assert client(api, "adm").get("/audit/verify").json() == {"ok": True, "problems": []}
