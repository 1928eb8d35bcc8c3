"""The API app in-process: built from explicit settings, and a stale ticket write answered 409."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.api import ApiSettings, Principal, TokensUnavailable, build_app, create_app
from service.concurrency import ConcurrentUpdate
from service.model import Ticket, TicketState
from service.store import SqliteStore
from tests.service.factories import device, engineer, site
from tests.service.live import mint_tokens

ADM = "in-memory-admin-token-0123456789abcdef"
H1 = "in-memory-hospital-s1-token-0123456789ab"
TOKENS = {ADM: {"role": "admin"}, H1: {"role": "hospital", "subject": "s1"}}


class StaleStore(SqliteStore):
    """A store where another writer has always just changed the tickets named in ``stale``."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: set[str] = set()

    def put_ticket(self, ticket: Ticket) -> Ticket:
        """Refuse the write like an optimistic-concurrency store that lost the race."""
        if ticket.id in self.stale:
            raise ConcurrentUpdate(f"ticket {ticket.id} changed since it was read")
        return super().put_ticket(ticket)


def _seed(store: SqliteStore) -> None:
    store.put_site(site("s1"))
    store.put_device(device("d1", site_id="s1"))
    store.put_engineer(engineer("e1"))


@pytest.fixture
async def stale() -> AsyncIterator[tuple[StaleStore, httpx.AsyncClient]]:
    store = StaleStore()
    _seed(store)
    app = build_app(store, {t: Principal.model_validate(p) for t, p in TOKENS.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield store, client
    store.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_stale_ticket_write_is_a_409_with_a_clear_message(
    stale: tuple[StaleStore, httpx.AsyncClient],
) -> None:
    store, client = stale
    made = await client.post("/tickets", json={"device_id": "d1"}, headers=_as(H1))
    assert made.status_code == 201, made.text
    ticket_id = made.json()["id"]
    audit_before = len(store.audit_log())
    store.stale.add(ticket_id)  # another writer changes it between our read and our write
    answer = await client.post(
        f"/tickets/{ticket_id}/events", json={"event": "accept"}, headers=_as(ADM)
    )
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert "changed by another request" in detail and "re-read it and retry" in detail
    assert ticket_id in detail
    # Nothing of the lost write was kept: same state, no audit entry.
    kept = store.ticket(ticket_id)
    assert kept is not None and kept.state is TicketState.DISPATCHED
    assert len(store.audit_log()) == audit_before


async def test_an_illegal_transition_stays_a_409_of_its_own(
    stale: tuple[StaleStore, httpx.AsyncClient],
) -> None:
    _, client = stale
    made = (await client.post("/tickets", json={"device_id": "d1"}, headers=_as(H1))).json()
    answer = await client.post(
        f"/tickets/{made['id']}/events", json={"event": "follow_up"}, headers=_as(ADM)
    )
    assert answer.status_code == 409 and "not allowed" in answer.json()["detail"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings in the environment that an app built from explicit settings must ignore."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VIGIL_SERVICE__STORE_URL", "sqlite:///" + str(tmp_path / "wrong.db"))
    monkeypatch.setenv("VIGIL_SERVICE__TOKENS_FILE", str(tmp_path / "wrong.json"))
    monkeypatch.setenv("VIGIL_SERVICE_TOKENS", json.dumps({"env-token": {"role": "admin"}}))


@pytest.mark.usefixtures("clean_env")
async def test_create_app_uses_only_the_settings_it_is_given(tmp_path: Path) -> None:
    store_path = tmp_path / "service.db"
    seeded = SqliteStore(store_path)
    _seed(seeded)
    seeded.close()
    minted = mint_tokens(
        tmp_path / "tokens.json",
        {"adm": {"role": "admin"}, "h1": {"role": "hospital", "subject": "s1"}},
    )
    settings = ApiSettings(
        store_url=f"sqlite:///{store_path}",
        tokens_file=tmp_path / "tokens.json",
        readings_url=f"sqlite:///{tmp_path / 'readings.db'}",
    )
    env_before = dict(os.environ)
    app = create_app(settings)
    assert dict(os.environ) == env_before
    assert not (tmp_path / "wrong.db").exists()
    async with _serving(app) as client:
        devices = await client.get("/devices", headers=_as(minted["h1"]))
        assert [d["id"] for d in devices.json()] == ["d1"]
        assert (await client.get("/devices", headers=_as("env-token"))).status_code == 401
        readings = await client.get("/devices/d1/readings", headers=_as(minted["adm"]))
        assert readings.status_code == 200 and readings.json() == []


def _serving(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_create_app_closes_the_stores_it_opened_on_shutdown(tmp_path: Path) -> None:
    mint_tokens(tmp_path / "tokens.json", {"adm": {"role": "admin"}})
    settings = ApiSettings(
        store_url=f"sqlite:///{tmp_path / 'service.db'}", tokens_file=tmp_path / "tokens.json"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.context.store.devices() == []
    with pytest.raises(Exception, match="closed"):
        app.state.context.store.devices()


def test_a_missing_tokens_file_is_refused_before_any_store_is_opened(tmp_path: Path) -> None:
    missing = tmp_path / "tokens.json"
    settings = ApiSettings(store_url=f"sqlite:///{tmp_path / 'service.db'}", tokens_file=missing)
    with pytest.raises(TokensUnavailable, match=r"does not exist\. Mint the first") as caught:
        create_app(settings)
    assert f"vigil tokens add --role admin --file {missing}" in str(caught.value)
    assert not (tmp_path / "service.db").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not JSON"),
        ('["adm"]', "is not a token registry"),
        ('{"t": {"role": "admin"}}', "old plain-token format"),
        ('{"tokens": []}', "holds no token"),
        ('{"tokens": [{"id": "abc"}]}', "invalid record"),
        (
            '{"tokens": [{"id": "a", "role": "root", "subject": null, "hash": "h",'
            ' "created_at": "2026-01-01T00:00:00+00:00"}]}',
            "unknown roles: root",
        ),
    ],
)
def test_a_bad_tokens_file_says_what_is_wrong(tmp_path: Path, content: str, reason: str) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(content)
    settings = ApiSettings(store_url=f"sqlite:///{tmp_path / 'service.db'}", tokens_file=tokens)
    with pytest.raises(TokensUnavailable, match=reason):
        create_app(settings)


def test_the_openapi_document_names_every_operation_once(tmp_path: Path) -> None:
    """A vendor generates a client from /openapi.json: a repeated operation id breaks it."""
    mint_tokens(tmp_path / "tokens.json", {"adm": {"role": "admin"}})
    settings = ApiSettings(
        store_url=f"sqlite:///{tmp_path / 'service.db'}", tokens_file=tmp_path / "tokens.json"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns of a duplicate operation id
        document = create_app(settings).openapi()
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) > 40
