"""Two uvicorn worker processes on one PostgreSQL database: concurrent clients, one audit chain,
and one manual ticket per device however many clicks race for it across the processes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from contract import DeviceKind
from service.audit_stream import verify_store
from service.model import OPEN_STATES, TicketKind
from service.store import PostgresStore
from tests.console.conftest import login
from tests.servers import PrivatePostgres
from tests.service.factories import device, engineer, site
from tests.service.live import LiveApi, api_env, client, fresh_database, mint_tokens, uvicorn_api

DEVICES = 16
CLIENTS = 8


@pytest.fixture(scope="module")
def two_workers(
    postgres_server: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApi, str]]:
    with fresh_database(postgres_server) as dsn:
        store = PostgresStore(dsn)
        store.put_site(site("s1"))
        for n in range(DEVICES):
            store.put_device(device(f"d{n}", site_id="s1"))
        store.put_engineer(engineer("e1", skills=frozenset(DeviceKind), capacity=1000))
        store.close()
        folder = tmp_path_factory.mktemp("workers")
        tokens = mint_tokens(folder / "tokens.json", {"adm": {"role": "admin"}})
        env = {
            **api_env(dsn, folder / "tokens.json"),
            "VIGIL_SERVICE__API_RATE_LIMIT": "100000/minute",
            "VIGIL_SERVICE__API_TICKET_RATE_LIMIT": "100000/hour",
        }
        with uvicorn_api(env, tokens, workers=2) as live:
            yield live, dsn


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes under ``pid`` (spawned; not multiprocessing's tracker)."""
    found = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _click(api: LiveApi, device_id: str) -> int:
    with client(api, "adm") as http:
        answer = http.post("/tickets", json={"device_id": device_id, "title": "broken"})
        listed = http.get("/tickets", params={"device_id": device_id})
        assert listed.status_code == 200
        return answer.status_code


def test_two_workers_serve_concurrent_clients_on_one_chain(
    two_workers: tuple[LiveApi, str],
) -> None:
    api, dsn = two_workers
    assert len(_workers(api.pid)) == 2
    # Every device clicked four times, by eight clients at once spread over both processes.
    clicks = [f"d{n % DEVICES}" for n in range(4 * DEVICES)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        codes = list(pool.map(lambda d: _click(api, d), clicks))
    assert sorted(set(codes)) == [200, 201] and codes.count(201) == DEVICES
    store = PostgresStore(dsn)
    try:
        opened = [t for t in store.tickets(OPEN_STATES) if t.kind is TicketKind.MANUAL]
        assert sorted(t.device_id for t in opened) == sorted(f"d{n}" for n in range(DEVICES))
        assert verify_store(store).ok
    finally:
        store.close()
    with client(api, "adm") as http:
        assert http.get("/audit/verify").json() == {"ok": True, "problems": []}


def test_a_console_login_holds_on_every_worker(two_workers: tuple[LiveApi, str]) -> None:
    api, _ = two_workers
    # No keep-alive: every request is a new connection, which either process may accept.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=api.base, limits=fresh, timeout=30) as browser:
        answer = login(browser, api.tokens["adm"])
        assert answer.status_code == 303
        home = answer.headers["location"]
        codes = [browser.get(home, follow_redirects=False).status_code for _ in range(24)]
    assert codes == [200] * 24, codes  # sessions in one process's memory: ~half would be 303
